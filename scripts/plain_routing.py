"""Write src/groupnorm/ops/plain_routing.json: which plain float32 CPU calls the kernels serve, derived from the
committed kernels-vs-torch measurements (groupnorm.bench.plain_rule.SOURCES).

Run from the repository root after adding a measurement: ``python scripts/plain_routing.py``. A measurement is
``GROUPNORM_CPU_SMALL_NUMEL=0 groupnorm bench --preset quick --device cpu --rounds 15 --json FILE`` on an idle
machine, FILE added to SOURCES.
"""

from __future__ import annotations

import json
from pathlib import Path

from groupnorm.bench.plain_rule import SOURCES, derive, load_sources

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "src" / "groupnorm" / "ops" / "plain_routing.json"


def rendered() -> str:
    derived = derive(load_sources(ROOT))
    return json.dumps({"sources": list(SOURCES), **derived}, indent=1, sort_keys=True) + "\n"


if __name__ == "__main__":
    OUT.write_text(rendered())
    print(f"{OUT.relative_to(ROOT)}: {json.loads(OUT.read_text())['rule']}")
