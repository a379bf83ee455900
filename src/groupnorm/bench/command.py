"""``groupnorm bench``: run the kernel benchmark and print/save the results.

Examples::

    groupnorm bench --preset quick --json out.json
    groupnorm bench --preset full --json full.json --resume          # picks up where a stopped run ended
    groupnorm bench --shapes sd-vae-512x64 --providers groupnorm,torch,torch-compile --modes fwd
    groupnorm bench --device cuda --preset quick
    groupnorm bench --models --quick                                # whole models, stock vs patched
"""

from __future__ import annotations

import itertools
import sys
from pathlib import Path

import torch

from groupnorm.activations import ACTIVATIONS
from groupnorm.bench import allocator, harness, models_command, providers, report, shapes
from groupnorm.repro.runtime import atomic_write_text

PRESETS = {
    # fp32, both layouts, GN and GN+SiLU, forward and forward+backward, no residual
    "quick": dict(
        shapes=shapes.QUICK_NAMES,
        layouts=["nchw", "channels_last"],
        dtypes=["float32"],
        activations=["none", "silu"],
        residual=[False],
        modes=["fwd", "fwd+bwd"],
    ),
    "full": dict(
        shapes=[s.name for s in shapes.ALL],
        layouts=["nchw", "channels_last"],
        dtypes=["float32", "bfloat16"],
        activations=["none", "silu", "gelu"],
        residual=[False, True],
        modes=["fwd", "bwd", "fwd+bwd"],
    ),
}


def _csv_list(text: str) -> list[str]:
    return [t.strip() for t in text.split(",") if t.strip()]


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "bench",
        help="benchmark the op against torch (time, GB/s, %% of copy bandwidth)",
        description="Benchmark groupnorm's op against torch on shapes from real networks.",
    )
    p.add_argument("--preset", choices=sorted(PRESETS), default="quick", help="case grid (default: quick)")
    p.add_argument("--device", default="cpu", help="cpu or cuda[:i] (default: cpu)")
    p.add_argument("--providers", type=_csv_list, help="comma list (default: every default provider)")
    p.add_argument("--shapes", type=_csv_list, help="comma list of shape names or NxCxHxW[:G]")
    p.add_argument("--layouts", type=_csv_list, help="nchw,channels_last")
    p.add_argument("--dtypes", type=_csv_list, help="float32,bfloat16,float16")
    p.add_argument("--activations", type=_csv_list, help="none,relu,silu,gelu,gelu_tanh")
    p.add_argument("--modes", type=_csv_list, help="fwd,bwd,fwd+bwd")
    p.add_argument("--residual", choices=["no", "yes", "both"], help="residual input (default: preset's)")
    p.add_argument(
        "--rounds", type=int, help="interleaved rounds per case (default: 7; --models: 3, with --quick 2)"
    )
    p.add_argument("--min-round-ms", type=float, default=15.0, help="minimum length of a round (default: 15)")
    p.add_argument("--threads", type=int, help="torch.set_num_threads (default: torch's)")
    p.add_argument("--json", type=Path, help="write the records here (a JSON list), updated after every case")
    p.add_argument("--csv", type=Path, help="write the records as CSV here")
    p.add_argument(
        "--markdown", "--md", type=Path, help="write a results page (command, machine, summary, table) here"
    )
    p.add_argument(
        "--malloc",
        choices=["keep", "default"],
        default="keep",
        help="keep: glibc keeps freed memory mapped, so page faults of fresh allocations do not decide the "
        "ratios (both providers alike; see groupnorm.bench.allocator); default: leave the allocator alone",
    )
    p.add_argument("--resume", action="store_true", help="keep the cases already in --json and skip them")
    p.add_argument("--list", action="store_true", help="list shapes and providers and exit")
    models_command.add_arguments(p)
    p.set_defaults(func=run)


def _grid(args) -> list[harness.Case]:
    preset = PRESETS[args.preset]
    residual = {"no": [False], "yes": [True], "both": [False, True], None: preset["residual"]}[args.residual]
    for name, allowed in (
        ("layouts", harness.LAYOUTS),
        ("dtypes", harness.DTYPES),
        ("modes", providers.MODES),
    ):
        for v in getattr(args, name) or []:
            if v not in allowed:
                raise ValueError(f"--{name}: unknown value {v!r}; choose from {', '.join(allowed)}")
    acts = args.activations or preset["activations"]
    for a in acts:
        if a not in ACTIVATIONS:
            raise ValueError(f"--activations: unknown value {a!r}")
    grid = itertools.product(
        shapes.lookup(args.shapes or preset["shapes"]),
        args.layouts or preset["layouts"],
        args.dtypes or preset["dtypes"],
        acts,
        residual,
        args.modes or preset["modes"],
    )
    return [harness.Case(*g) for g in grid]


def command_line(args) -> str:
    """The options of this run as a command line (for the results page)."""
    parts = ["groupnorm", "bench", "--preset", args.preset, "--device", args.device]
    for name in ("providers", "shapes", "layouts", "dtypes", "activations", "modes"):
        value = getattr(args, name)
        if value:
            parts += [f"--{name}", ",".join(value)]
    if args.residual:
        parts += ["--residual", args.residual]
    if args.malloc != "keep":
        parts += ["--malloc", args.malloc]
    parts += ["--rounds", str(args.rounds), "--min-round-ms", f"{args.min_round_ms:g}"]
    if args.threads:
        parts += ["--threads", str(args.threads)]
    for name in ("json", "csv", "markdown"):
        value = getattr(args, name)
        if value:
            parts += [f"--{name}", str(value)]
    return " ".join(parts)


def _record_key(r: dict) -> tuple:
    return (
        r["shape_name"],
        r["layout"],
        r["dtype"],
        r["activation"],
        r["residual"],
        r["mode"],
        r["provider"],
    )


def _progress(total: int):
    try:
        from tqdm import tqdm

        return tqdm(total=total, unit="case", file=sys.stderr, dynamic_ncols=True)
    except ImportError:

        class Plain:
            def __init__(self):
                self.n = 0

            def update(self, k=1):
                self.n += k
                print(f"\r[{self.n}/{total}]", end="", file=sys.stderr, flush=True)

            def set_description(self, _text):
                pass

            def close(self):
                print(file=sys.stderr)

        return Plain()


def run(args) -> int:
    if args.models is not None:
        return models_command.run(args)
    stray = models_command.options_given(args)
    if stray:
        print(f"groupnorm bench: {stray} apply to --models only", file=sys.stderr)
        return 2
    if args.rounds is None:
        args.rounds = 7
    if args.list:
        for s in shapes.ALL:
            print(f"{s.name:22s} {'x'.join(map(str, s.shape)):18s} G={s.groups:<3d} {s.source}")
        for name in providers.names():
            prov = providers.get(name)
            print(f"provider {name:14s} {'default' if prov.default else 'on request':10s} {prov.description}")
        for line in providers.not_loaded_lines():
            print(line)
        return 0
    if args.threads:
        torch.set_num_threads(args.threads)
    device = args.device
    if torch.device(device).type == "cuda" and not torch.cuda.is_available():
        print("groupnorm bench: --device cuda but CUDA is not available", file=sys.stderr)
        return 2
    try:
        cases = _grid(args)
    except ValueError as e:
        print(f"groupnorm bench: {e}", file=sys.stderr)
        return 2
    for line in providers.not_loaded_lines():
        print(f"groupnorm bench: {line}", file=sys.stderr)
    names = args.providers or [n for n in providers.names() if providers.get(n).default]
    for n in names:
        try:
            providers.get(n)
        except ValueError as e:
            print(f"groupnorm bench: --providers: {e}", file=sys.stderr)
            return 2
    if "torch" not in names:
        names.append("torch")  # the ratio column needs it

    import groupnorm.ops  # noqa: F401  (the op and the kernels of this machine)

    if torch.device(device).type == "cpu":
        import groupnorm.ops.cpu  # noqa: F401

    records: list[dict] = []
    if args.resume and args.json and args.json.exists():
        records = report.read_json(args.json)
    done = {_record_key(r) for r in records}
    todo = [c for c in cases if any(c.key() + (n,) not in done for n in names)]
    env = report.environment(device)
    env["malloc"] = allocator.keep_freed_memory() if args.malloc == "keep" else "default"
    env["providers_not_loaded"] = providers.load_errors()  # what this machine could not compare against
    bar = _progress(len(todo))
    for case in todo:
        bar.set_description(f"{case.shape.name} {case.layout} {case.activation} {case.mode}")
        new = harness.run_case(
            case, names, device=device, rounds=args.rounds, min_round_s=args.min_round_ms / 1000
        )
        roof, frac = harness.roofline(case, device)
        for r in new:
            r["roofline"] = roof
            limit = None if frac is None else r["copy_gbps"] * frac
            r["pct_roofline"] = (
                None if (limit is None or r.get("gbps") is None) else round(100 * r["gbps"] / limit, 1)
            )
            r.update(env)
        replaced = {_record_key(r) for r in new}
        records = [r for r in records if _record_key(r) not in replaced] + new
        if args.json:
            report.write_json(args.json, records)
        bar.update(1)
    bar.close()
    if args.csv:
        atomic_write_text(args.csv, report.to_csv(records))
    if args.markdown:
        atomic_write_text(args.markdown, report.markdown_report(records, command_line(args)))
    print(report.markdown_table(records))
    print()
    print(report.summary(records))
    return 0
