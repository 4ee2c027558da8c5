"""Deployment and SLO schemas: the YAML users write, and the mistakes they make."""

import pickle

import pytest
import yaml
from pydantic import TypeAdapter, ValidationError

from profiles.errors import ConfigurationError
from profiles.tokens import FixedResize, NativeResolution
from sim.deployment import (
    DeploymentSpec,
    HostedApiStage,
    ModelStage,
    OnDeviceStage,
    PrefillDecodeDisaggregation,
    SyntheticStage,
    TieredImagePolicy,
)
from sim.router import route_image_policy
from sim.slo import SloSpec

EXAMPLE = """
- name: generalist-72b
  stages:
    - {name: vlm, kind: model, model: qwen2.5-vl-72b, gpu: h100-sxm, tensor_parallel: 4, replicas: 2}
- name: specialist
  router: {classifier: {model: bert-base-router, gpu: l4, replicas: 1}}
  stages:
    - {name: ocr, kind: model, model: deepseek-ocr, gpu: a100-80gb, replicas: 2, output_tokens: 300}
    - {name: text, kind: model, model: qwen2.5-7b, gpu: h100-sxm, replicas: 2, text_only_input: true}
    - {name: vlm7b, kind: model, model: qwen2.5-vl-7b, gpu: h100-sxm, replicas: auto, max_replicas: 8,
       disaggregation: {mode: prefill_decode, prefill_replicas: 1, decode_replicas: 3}}
  routes:
    - {classes: [invoice], path: [ocr, text]}
    - classes: ["*"]
      path: [vlm7b]
      image_policy: {by_tier: {low_res: {kind: fixed, image_px: 448, tokens: 256}, default: {kind: native}}}
- {name: api, stages: [{name: api, kind: hosted_api, api: gpt-4o}]}
- {name: phone, stages: [{name: phone, kind: on_device, model: smolvlm-256m, device: jetson-agx-orin}]}
- {name: mm1, stages: [{name: q, kind: synthetic, servers: 1, service: {distribution: exponential, mean_s: 0.1}}]}
"""


def parse(text: str) -> list[DeploymentSpec]:
    return TypeAdapter(list[DeploymentSpec]).validate_python(yaml.safe_load(text))


def test_example_yaml_parses_into_stage_kinds():
    generalist, specialist, api, phone, mm1 = parse(EXAMPLE)
    assert isinstance(generalist.stages[0], ModelStage)
    assert generalist.stages[0].tensor_parallel == 4
    assert [type(s) for s in specialist.stages] == [ModelStage] * 3
    assert isinstance(specialist.stages[2].disaggregation, PrefillDecodeDisaggregation)
    assert isinstance(api.stages[0], HostedApiStage)
    assert isinstance(phone.stages[0], OnDeviceStage)
    assert isinstance(mm1.stages[0], SyntheticStage)
    assert specialist.router.classifier.gpu == "l4"


def test_routes_by_class_with_wildcard_and_tiers():
    specialist = parse(EXAMPLE)[1]
    assert specialist.route_for("invoice").path == ["ocr", "text"]
    chat = specialist.route_for("chat")
    assert chat.path == ["vlm7b"]
    assert isinstance(chat.image_policy, TieredImagePolicy)
    assert isinstance(route_image_policy(chat, "low_res"), FixedResize)
    assert isinstance(route_image_policy(chat, "high_res"), NativeResolution)  # falls back to default


def test_without_routes_every_class_visits_all_stages_in_order():
    deployment = DeploymentSpec(name="pipe", stages=[
        SyntheticStage(name="a", service={"distribution": "deterministic", "mean_s": 1}),
        SyntheticStage(name="b", service={"distribution": "deterministic", "mean_s": 1}),
    ])
    assert deployment.route_for("anything").path == ["a", "b"]


def test_class_without_a_route_is_a_configuration_error():
    deployment = parse(EXAMPLE)[1].model_copy(update={"routes": parse(EXAMPLE)[1].routes[:1]})
    with pytest.raises(ConfigurationError, match="no route for request class 'chat'"):
        deployment.route_for("chat")


def test_auto_replicas_simulate_at_the_minimum():
    vlm7b = parse(EXAMPLE)[1].stages[2]
    assert vlm7b.replicas == "auto"
    assert vlm7b.fixed_replicas == 1


@pytest.mark.parametrize(("text", "message"), [
    ("- {name: d, stages: [{name: s, kind: modle, model: m, gpu: g}]}", "modle"),
    ("- {name: d, stages: [{name: s, kind: model, model: m, gpu: g, replica: 2}]}", "replica"),
    ("- {name: d, stages: [{name: s, kind: model, model: m, gpu: g}], routes: [{classes: [a], path: [t]}]}",
     "unknown stages"),
    ("- {name: d, stages: [{name: s, kind: hosted_api, api: a}, {name: s, kind: hosted_api, api: b}]}",
     "unique"),
    ("- {name: d, stages: [{name: s, kind: model, model: m, gpu: g, hot_expert_factor: 0.5}]}",
     "hot_expert_factor"),
])
def test_mistakes_are_named(text, message):
    with pytest.raises(ValidationError, match=message):
        parse(text)


def test_specs_pickle():
    deployments = parse(EXAMPLE)
    assert pickle.loads(pickle.dumps(deployments)) == deployments


def test_slo_per_class_overrides_defaults():
    slo = SloSpec(ttft_s=2.0, tpot_s=0.2, per_class={"invoice": {"e2e_s": 5.0}, "chat": {"ttft_s": 1.0}})
    assert slo.targets("invoice").model_dump() == {"ttft_s": 2.0, "tpot_s": 0.2, "e2e_s": 5.0}
    assert slo.targets("chat").ttft_s == 1.0
    assert slo.targets("other").e2e_s is None
    assert slo.is_met(0.995)
    assert not slo.is_met(0.98)


def test_slo_needs_a_target():
    with pytest.raises(ValidationError, match="at least one"):
        SloSpec(ttft_s=None, tpot_s=None)
