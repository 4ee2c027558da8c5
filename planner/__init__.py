"""vlmplan's planner: scenarios, the command line, plans, comparisons and exports."""

import os

# pyarrow (imported by pandas, and reading the kernel tables) otherwise gives its thread pool mimalloc
# arenas that reserve about 1 GB of address space: a third of a 3 GB `ulimit -v`, for nothing. The
# system allocator reserves nothing ahead. Set before anything imports pyarrow; a user's choice stands.
os.environ.setdefault("ARROW_DEFAULT_MEMORY_POOL", "system")
