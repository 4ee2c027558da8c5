"""KV-cache accounting of one replica, in tokens, with block-granular prefix caching.

Capacity comes from the performance model's ``MemoryPlan`` (VRAM left after
weights and the activation reserve, divided by KV bytes per token). The
cache also integrates its use over time, for the mean and peak use metrics.

Prefix caching (vLLM's automatic prefix caching, SGLang's radix cache,
TensorRT-LLM's block reuse): a prompt is a chain of *parts* (a class's
system prompt, each earlier turn of a conversation, the new input), each
with an identity that fixes its content. A part owns the full KV blocks
whose last token falls inside it, so a block's identity is (the part chain up
to there, its index): vLLM's hash of the parent block and the block's tokens.
The cache keeps, per part, how many of its blocks are still resident
(``PrefixNode``). A new sequence reuses the resident blocks of its chain from
the start, up to the first missing one, and never its last token (vLLM
recomputes at least one). Running sequences pin the nodes they use;
unpinned resident blocks are *evictable*: they count as free for admission
and are evicted, least recently used first and from a chain's tail first,
only when an allocation needs their room (vLLM's free-block queue; SGLang
evicts radix-tree leaves by last access).

Host memory can be a second tier (SGLang's HiCache, vLLM's CPU offloading
connector, LMCache): blocks evicted from the GPU are kept in host memory of a
stated capacity, per part as a range of its blocks, least recently used
entries dropped first when it is full. A prompt whose GPU-resident prefix
ends where host blocks of its chain continue loads those over the host link
(the batcher times the copy from bytes and link bandwidth) instead of
prefilling them. Tokens.
"""

import heapq

# KV block (page) size each engine hashes and reuses in whole, tokens: vLLM's default
# block_size 16 (vllm/config/cache.py DEFAULT_BLOCK_SIZE); TensorRT-LLM's tokens_per_block 32
# (LLM API KvCacheConfig reference, nvidia.github.io/TensorRT-LLM); SGLang's radix cache with its
# default page_size 1 [recalled, unverified].
ENGINE_BLOCK_TOKENS = {"vllm": 16, "sglang": 1, "trtllm": 32}
# Whether each engine caches prefixes unless told not to: vLLM V1 (enable_prefix_caching),
# SGLang (the radix cache unless --disable-radix-cache), TensorRT-LLM's LLM API
# (KvCacheConfig.enable_block_reuse = True in its reference) all default to on [vLLM:
# docs.vllm.ai design/prefix_caching; SGLang recalled, unverified].
ENGINE_PREFIX_CACHING = {"vllm": True, "sglang": True, "trtllm": True}

# A prompt's cacheable chain: (part key, cumulative full blocks at the part's end) for each part
# that ends at least one block; the parts' keys are unique to their content and predecessors.
PrefixChain = tuple[tuple[int, int], ...]


class PrefixNode:
    """The resident blocks of one prompt part on one replica (a radix-tree node)."""

    __slots__ = ("blocks", "cached_blocks", "children", "key", "last_used", "parent", "refs", "stamp",
                 "start_blocks")

    def __init__(self, key: int, parent: "PrefixNode | None", start_blocks: int, blocks: int,
                 last_used: int) -> None:
        self.key = key
        self.parent = parent
        self.start_blocks = start_blocks  # full blocks before the part (its chain's earlier parts)
        self.blocks = blocks  # full blocks the part owns
        self.cached_blocks = blocks  # resident ones, a prefix of them (eviction takes the tail)
        self.refs = 0  # running sequences that use it (pinned: not evictable)
        self.children = 0  # child nodes with resident blocks (a node with some is not a leaf)
        self.last_used = last_used  # the cache's use counter when last hit or filled
        self.stamp = 0  # bumped when the node's eviction-heap entry goes stale


class KvCache:
    """Token slots of one replica's KV cache with time-weighted use statistics and a prefix cache."""

    __slots__ = ("_clock", "_evictable_heap", "_host", "_last_s", "_nodes", "_pushes", "block_tokens",
                 "capacity_tokens", "evictable_tokens", "evicted_blocks", "host_capacity_tokens", "host_limit_tokens",
                 "host_tokens", "peak_tokens", "prefix_caching", "token_seconds", "used_tokens")

    def __init__(self, capacity_tokens: int, block_tokens: int = 16, prefix_caching: bool = False,
                 host_capacity_tokens: int = 0) -> None:
        self.capacity_tokens = capacity_tokens
        self.used_tokens = 0  # held by running sequences (their own slots and the nodes they pin)
        self.peak_tokens = 0
        self.token_seconds = 0.0
        self._last_s = 0.0
        self.block_tokens = block_tokens
        self.prefix_caching = prefix_caching
        self.evictable_tokens = 0  # resident prefix blocks no running sequence uses
        self.evicted_blocks = 0
        self._nodes: dict[int, PrefixNode] = {}
        # Evictable leaves: (last_used, push order, stamp, node); the push order breaks ties (never the node).
        self._evictable_heap: list[tuple[int, int, int, PrefixNode]] = []
        self._pushes = 0
        self._clock = 0  # counts cache uses: the LRU order
        # Host tier: part key -> (the part's first block in its chain, first and end block of the part kept),
        # least recently used first (a dict keeps insertion order; a use moves the entry to the end).
        self._host: dict[int, tuple[int, int, int]] = {}
        self.host_capacity_tokens = host_capacity_tokens  # 0: no host tier
        self.host_limit_tokens = host_capacity_tokens  # what swapped-out sequences leave of it
        self.host_tokens = 0  # held by the tier

    @property
    def free_tokens(self) -> int:
        """Slots not in use by running sequences (evictable cached blocks count as free)."""
        return self.capacity_tokens - self.used_tokens

    def observe(self, now_s: float) -> None:
        """Integrate use up to ``now_s`` (call before every change)."""
        self.token_seconds += self.used_tokens * (now_s - self._last_s)
        self._last_s = now_s

    def allocate(self, tokens: int) -> None:
        """Take ``tokens`` slots, evicting cached blocks if needed; the caller has checked ``free_tokens``."""
        self.used_tokens += tokens
        if self.used_tokens > self.peak_tokens:
            self.peak_tokens = self.used_tokens
        if self.evictable_tokens and self.used_tokens + self.evictable_tokens > self.capacity_tokens:
            self._evict(self.used_tokens + self.evictable_tokens - self.capacity_tokens)

    def release(self, tokens: int) -> None:
        """Give back ``tokens`` slots."""
        self.used_tokens -= tokens

    def mean_use(self, span_s: float) -> float:
        """Time-weighted mean share of capacity in use over ``span_s`` seconds."""
        if span_s <= 0 or self.capacity_tokens <= 0:
            return 0.0
        return self.token_seconds / span_s / self.capacity_tokens

    # ------------------------------------------------------------ prefix cache

    @property
    def cached_tokens(self) -> int:
        """Tokens in resident prefix blocks, pinned or evictable."""
        return sum(node.cached_blocks for node in self._nodes.values()) * self.block_tokens

    def match(self, chain: PrefixChain, max_blocks: int) -> int:
        """Resident blocks of ``chain`` from its start (at most ``max_blocks``), without taking them."""
        nodes, blocks = self._nodes, 0
        for key, end_blocks in chain:
            node = nodes.get(key)
            if node is None:
                break
            blocks = node.start_blocks + node.cached_blocks
            if blocks < end_blocks:
                break
        return min(blocks, max_blocks)

    def shared_tokens(self, chain: PrefixChain, max_blocks: int) -> int:
        """Tokens of ``chain``'s resident blocks (from its start, at most ``max_blocks``) that running sequences
        already pin: a new sequence reusing them needs no room for them (evictable ones it does: they leave the
        free pool), as vLLM's allocation counts only new and evictable cached blocks against the free ones."""
        nodes, blocks, shared = self._nodes, 0, 0
        for key, end_blocks in chain:
            node = nodes.get(key)
            if node is None or blocks >= max_blocks:
                break
            end = min(node.start_blocks + node.cached_blocks, max_blocks)
            if node.refs:
                shared += end - blocks
            blocks = end
            if blocks < end_blocks:
                break
        return shared * self.block_tokens

    def acquire(self, chain: PrefixChain, max_blocks: int, pinned: list[PrefixNode]) -> int:
        """Pin the resident blocks of ``chain`` (into ``pinned``); return the blocks reused, at most ``max_blocks``.

        Evictable blocks that are reused move to the running sequences' use.
        """
        nodes, blocks = self._nodes, 0
        self._clock += 1
        for key, end_blocks in chain:
            node = nodes.get(key)
            if node is None or blocks >= max_blocks:
                break
            self._pin(node)
            pinned.append(node)
            blocks = node.start_blocks + node.cached_blocks
            if blocks < end_blocks:
                break
        return min(blocks, max_blocks)

    def publish(self, chain: PrefixChain, pinned: list[PrefixNode], computed_blocks: int = 1 << 62) -> int:
        """Make the blocks of ``chain`` a running sequence has computed (its first ``computed_blocks``) resident
        and pinned by it.

        Called after each of its prefill chunks: vLLM caches a request's
        full blocks as it schedules the chunk that computes them, so a request
        scheduled in a later step reuses them while the owner is still
        prefilling. A part computed only in part is resident up to there (a
        prefix of its blocks, as eviction leaves one). Returns the tokens that
        moved from the sequence's own slots into the nodes (it releases that
        many fewer when it leaves). A block another sequence made resident
        meanwhile keeps that copy; this sequence's copy stays its own, as vLLM
        keeps the first block cached under a hash.
        """
        nodes, moved, block_tokens = self._nodes, 0, self.block_tokens
        parent: PrefixNode | None = None
        start_blocks = 0
        self._clock += 1
        for key, end_blocks in chain:
            if start_blocks >= computed_blocks:
                break
            done_blocks = min(end_blocks, computed_blocks) - start_blocks  # of this part, computed so far
            node = nodes.get(key)
            if node is None:
                if parent is not None and parent.start_blocks + parent.cached_blocks < start_blocks:
                    break  # the part before is no longer whole: nothing hangs below it
                node = nodes[key] = PrefixNode(key, parent, start_blocks, end_blocks - start_blocks, self._clock)
                node.cached_blocks = done_blocks
                node.refs = 1  # its tokens were the sequence's own, already in use
                pinned.append(node)
                moved += done_blocks * block_tokens
                if parent is not None:
                    parent.children += 1
            elif node.cached_blocks < done_blocks and not node.children and node in pinned:
                # Reused at admission or made resident by an earlier chunk: this sequence computed more of it.
                moved += (done_blocks - node.cached_blocks) * block_tokens
                node.cached_blocks = done_blocks
                if done_blocks > node.blocks:  # a turn's answer kept short of its last block, now whole
                    node.blocks = done_blocks
            if node.start_blocks + node.cached_blocks < end_blocks:
                break  # not whole (yet): nothing hangs below it
            node.last_used = self._clock
            parent, start_blocks = node, end_blocks
        return moved

    def publish_tail(self, parent_key: int, key: int, end_blocks: int) -> int:
        """Keep a finished sequence's generated blocks after its last prompt part, as an evictable node.

        The conversation's next turn re-sends them; returns the tokens moved
        from the sequence's own slots to the evictable pool (0 when the prompt
        part is not whole here or the tail is already resident).
        """
        parent = self._nodes.get(parent_key)
        if parent is None or key in self._nodes:
            return 0
        start_blocks = parent.start_blocks + parent.cached_blocks
        if start_blocks < parent.start_blocks + parent.blocks or end_blocks <= start_blocks:
            return 0
        self._clock += 1
        node = self._nodes[key] = PrefixNode(key, parent, start_blocks, end_blocks - start_blocks, self._clock)
        parent.children += 1
        tokens = node.blocks * self.block_tokens
        self.used_tokens -= tokens
        self.evictable_tokens += tokens
        self._push_evictable(node)
        return tokens

    def release_pins(self, pinned: list[PrefixNode]) -> None:
        """A sequence left: unpin its nodes; unused ones become evictable (most recently used)."""
        block_tokens = self.block_tokens
        self._clock += 1
        for node in pinned:
            node.refs -= 1
            node.last_used = self._clock
            if node.refs == 0:
                tokens = node.cached_blocks * block_tokens
                self.used_tokens -= tokens
                self.evictable_tokens += tokens
                if not node.children:
                    self._push_evictable(node)
        if self.used_tokens + self.evictable_tokens > self.capacity_tokens:
            self._evict(self.used_tokens + self.evictable_tokens - self.capacity_tokens)

    def host_blocks(self, chain: PrefixChain, from_blocks: int, max_blocks: int) -> int:
        """Blocks of ``chain`` the host tier holds contiguously from block ``from_blocks`` (where the GPU-resident
        prefix ends), at most up to ``max_blocks``; the entries used become the most recently used."""
        host, position, start_blocks = self._host, from_blocks, 0
        for key, end_blocks in chain:
            if position >= max_blocks:
                break
            if end_blocks <= position:
                start_blocks = end_blocks
                continue
            entry = host.get(key)
            if entry is None or entry[0] != start_blocks or start_blocks + entry[1] > position:
                break
            del host[key]
            host[key] = entry  # most recently used
            position = max(position, start_blocks + entry[2])
            if position < end_blocks:
                break
            start_blocks = end_blocks
        return min(position, max_blocks) - from_blocks

    def limit_host(self, limit_tokens: int) -> None:
        """Host memory left to the tier (swapped-out sequences take the rest): drop entries beyond it."""
        self.host_limit_tokens = limit_tokens
        self._trim_host()

    def _to_host(self, node: PrefixNode, first: int, end: int) -> None:
        """Keep blocks [``first``, ``end``) of ``node``'s part, evicted from the GPU, in the host tier."""
        host, block_tokens = self._host, self.block_tokens
        entry = host.pop(node.key, None)
        if entry is not None:
            self.host_tokens -= (entry[2] - entry[1]) * block_tokens
            if entry[1] <= end and first <= entry[2]:  # touching ranges of the same part join
                first, end = min(first, entry[1]), max(end, entry[2])
        if (end - first) * block_tokens > self.host_limit_tokens:
            return
        host[node.key] = (node.start_blocks, first, end)
        self.host_tokens += (end - first) * block_tokens
        self._trim_host()

    def _trim_host(self) -> None:
        """Drop the least recently used host entries until the tier fits its limit."""
        host = self._host
        while self.host_tokens > self.host_limit_tokens and host:
            key = next(iter(host))
            _, first, end = host.pop(key)
            self.host_tokens -= (end - first) * self.block_tokens

    def _pin(self, node: PrefixNode) -> None:
        """First use of an unpinned node: its resident blocks leave the evictable pool."""
        if node.refs == 0:
            tokens = node.cached_blocks * self.block_tokens
            self.evictable_tokens -= tokens
            self.used_tokens += tokens
            node.stamp += 1  # its heap entry (if any) is stale
            if self.used_tokens > self.peak_tokens:
                self.peak_tokens = self.used_tokens
        node.refs += 1
        node.last_used = self._clock

    def _push_evictable(self, node: PrefixNode) -> None:
        node.stamp += 1
        self._pushes += 1
        heap = self._evictable_heap
        heapq.heappush(heap, (node.last_used, self._pushes, node.stamp, node))
        if len(heap) > 2 * len(self._nodes) + 1024:  # stale entries pile up when little is evicted
            self._evictable_heap = [entry for entry in heap if entry[2] == entry[3].stamp]
            heapq.heapify(self._evictable_heap)

    def _evict(self, tokens: int) -> None:
        """Evict at least ``tokens`` of unpinned resident blocks: least recently used leaves, tail first."""
        heap, block_tokens = self._evictable_heap, self.block_tokens
        blocks_needed = -(-tokens // block_tokens)
        while blocks_needed > 0 and heap:
            _, _, stamp, node = heap[0]
            if stamp != node.stamp or node.refs or node.children or not node.cached_blocks:
                heapq.heappop(heap)  # stale: pinned, refilled, grew children or already gone
                continue
            taken = min(blocks_needed, node.cached_blocks)
            if self.host_capacity_tokens:
                self._to_host(node, node.cached_blocks - taken, node.cached_blocks)
            node.cached_blocks -= taken
            blocks_needed -= taken
            self.evicted_blocks += taken
            self.evictable_tokens -= taken * block_tokens
            if node.cached_blocks:
                continue  # the leaf keeps the head of its blocks and its place in the heap
            heapq.heappop(heap)
            del self._nodes[node.key]
            parent = node.parent
            if parent is not None:
                parent.children -= 1
                if not parent.children and not parent.refs and parent.cached_blocks:
                    self._push_evictable(parent)
