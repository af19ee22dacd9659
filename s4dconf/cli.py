"""The one command line (floor 6, the top): every command of README "Command line", wired to the packages below.

    backends, configs, model, quantize, golden   reference/, fixedpoint/, goldens/, backends/
    check, run                                   conformance/ (pytest), then reports/
    vectors                                      conformance/vectors.py (export, verify)
    data, train, eval, paper-run                 training/
    claims, bench, report                        reports/
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import subprocess
import sys
import tempfile
import textwrap
import time
from collections import Counter
from pathlib import Path

import numpy as np

import s4dconf
from s4dconf.backends import backend_sources, get_backend, resolve_backend
from s4dconf.backends.torch_backends import choose_device
from s4dconf.fixedpoint.formats import (DEFAULT_PROFILE, FORMAT_PROFILES, RESCALE_MODES, ROUNDING_MODES,
                                        SATURATION_MODES, format_from_profile, save_fxp)
from s4dconf.fixedpoint.quantize import quantize
from s4dconf.goldens import store as golden
from s4dconf.reference.config import NAMED_CONFIGS, get_config
from s4dconf.reference.inputs import FAMILIES, make_input
from s4dconf.reference.model import S4DModel
from s4dconf.reference.modelfile import load_model, params_digest, save_model
from s4dconf.reference.npzio import atomic_write, check_output_path, read_npz
from s4dconf.reference.provenance import GRADES, grade_text
from s4dconf.reference.validate import S4DInputError
from s4dconf.reports.claims import committed_benchmark_files, default_benchmark_files, evaluate
from s4dconf.reports.compare import load_run
from s4dconf.reports.compare import register as register_bench
from s4dconf.reports.report import build_report, register as register_report
from s4dconf.reports.report import default_inputs as default_report_inputs
from s4dconf.reports.resource_table import write_resources
from s4dconf.reports.tables import text_table
from s4dconf.training import datafiles
from s4dconf.training import datasets as ds
from s4dconf.training.accuracy import MODELS_DIR, accuracy_table, load_table, merge_tables, prepare_table, write_table
from s4dconf.training.recipes import get_recipe, make_models
from s4dconf.training.jpeg_check import jpeg_check, write_jpeg_check
from s4dconf.training.distributed import EvalPool
from s4dconf.training import sweep as sweeps
from s4dconf.reports.sweep_report import sweep_plot
from s4dconf.training.paper_run import PAPER_QAFT_BATCH, PAPER_RECIPES, TABLE_DIR, paper_run
from s4dconf.conformance.vectors import NUMERIC_CLASSES, describe_difference, export_vectors, verify_vectors
from s4dconf.check_output import (WIDTH, check_matrix, check_summary, conformance_dir, failing_checks, is_terminal,
                                  run_conformance, side_files)

EPILOG = """layout (README "Layout"; each floor imports only the floors below it):
  reference/   float64 S4D, model files, inputs, metrics     fixedpoint/  Loihi 2 integer arithmetic, PTQ
  goldens/     golden outputs (float and integer)             backends/    the backends behind one contract
  measure/     energy meters, operation/resource model        conformance/ the pytest suite and benchmarks
  training/    datasets, training, accuracy table             reports/     claims, bench compare, the report
exit codes: 0 all passed, 1 a check failed, 2 bad input (the message says what and where)"""


# ----------------------------------------------------------------------------- argument and output checks
# The rule (README "Command line"): bad input is an S4DInputError (or argparse's own error) saying what, where and
# what to do, exit code 2, and it is found before any long work starts. Output paths are checked first of all.


def _int_type(minimum: int, what: str):
    """An argparse type: an integer >= minimum (argparse turns the ArgumentTypeError into exit code 2)."""
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            value = None
        if value is None or value < minimum:
            raise argparse.ArgumentTypeError(f"must be {what}, got {text!r}")
        return value
    return parse


POSITIVE_INT = _int_type(1, "a positive integer")
NON_NEGATIVE_INT = _int_type(0, "an integer >= 0")


def _check_writable(out, *inputs, what: str, example: str = "out.json") -> Path:
    """check_output_path (not an input, not a directory, its folder creatable and writable), then a real try: a
    temporary file created and removed in the nearest existing folder (permission bits do not stop root, a
    read-only or virtual file system does)."""
    if Path(out).is_dir():
        raise S4DInputError(f"{what} {out} is a directory; give a file name, e.g. {Path(out) / example}")
    out = check_output_path(out, *inputs, what=what)
    folder = out.parent
    while not folder.exists() and folder != folder.parent:
        folder = folder.parent
    try:
        with tempfile.TemporaryFile(dir=folder):
            pass
    except OSError as e:
        raise S4DInputError(f"{what} {out}: cannot create a file in {folder} ({e.strerror or e}); choose a writable "
                            "place") from None
    return out


def _check_writable_folder(folder, inside: str, *inputs, what: str) -> Path:
    """An output folder: not a file, creatable and writable (checked through the file `inside` it will hold)."""
    folder = Path(folder)
    if folder.exists() and not folder.is_dir():
        raise S4DInputError(f"{what} {folder} is a file, not a folder; give a folder (it is created when missing)")
    _check_writable(folder / inside, *inputs, what=what)
    return folder


def _calib_file(calib: str) -> str | None:
    return None if calib == "default" or calib in FAMILIES else calib


def check_outputs(args) -> None:
    """Every output path of the command (--out, --json, --out-dir, golden generate's --dir), checked before the
    command does anything else; an output that is one of its inputs is refused."""
    c = args.command
    if c == "model":
        _check_writable(args.out, what="model file (--out)", example="model.npz")
    elif c == "quantize":
        _check_writable(args.out, args.model, _calib_file(args.calib), what="fixed-point model file (--out)",
                        example="model-fxp.npz")
    elif c == "golden" and args.action == "generate":
        _check_writable_folder(Path(args.dir) if args.dir else golden.GOLDEN_DIR, "manifest.json",
                               what="golden folder (--dir)")
    elif c == "check" and args.json:
        _check_writable(args.json, what="records JSON (--json)")
    elif c in ("run", "report"):
        _check_writable_folder(args.out, "report.html", what="output folder (--out)")
    elif c == "train":
        _check_writable_folder(args.out_dir, f"{args.recipe}.log.json", what="output folder (--out-dir)")
    elif c == "eval":  # --merge may be the table written here: merging in place is how the Lava columns join
        _check_writable_folder(args.out, "jpeg_check.json" if args.jpeg_check is not None else "accuracy.json",
                               what="output folder (--out)")
    elif c == "sweep":
        _check_writable_folder(args.out, "sweep.json", args.model, what="output folder (--out)")
    elif c == "paper-run":
        _check_writable_folder(args.out_dir, "paper-run.log.json", what="output folder (--out-dir)")
        _check_writable_folder(args.table, "accuracy.json", what="accuracy table folder (--table)")
    elif c == "claims" and args.json:
        _check_writable(args.json, args.accuracy, *(args.bench or ()), what="verdicts JSON (--json)")
    elif c == "bench" and getattr(args, "json", None):
        _check_writable(args.json, args.a, args.b, what="comparison JSON (--json)")
    elif c == "vectors" and args.action == "export":
        _check_writable_folder(args.dir, "index.json", what="vectors folder (DIR)")
    elif c == "vectors" and args.json:
        _check_writable(args.json, what="records JSON (--json)")


def _write_json(path, data, what: str) -> None:
    text = json.dumps(data, indent=1) + "\n"
    atomic_write(path, lambda f: f.write(text.encode()), what, make_dirs=True)


def cmd_backends(args) -> int:
    """Every registered backend (built in, then the entry points of group s4dconf.backends, refused ones with the
    reason) and the ones --backend names (an import path module:Class), each with its origin (SPEC.md section 8);
    below the table, where each backend from outside the repository comes from."""
    named = [resolve_backend(spec) for spec in args.backend]  # a bad name or import path: exit 2 here
    rows = [("name", "origin", "available", "numeric class", "device", "version / reason")]
    listed = []
    for src in backend_sources() + named:
        if src in listed:
            continue
        listed.append(src)
        try:
            b = src.create()
        except S4DInputError as e:
            if src in named:
                raise
            rows.append((src.name, src.kind, "no", "-", "-", str(e).removeprefix(f"{src.where}: ")))
            continue
        av = b.availability()
        if av.available:
            info = b.info()
            rows.append((src.name, src.kind, "yes", info.numeric_class, info.device, info.version))
        else:
            rows.append((src.name, src.kind, "no", "-", "-", f"not available: {av.reason}"))
    print(text_table(rows, width=WIDTH))
    outside = [src for src in listed if src.kind != "built in"]
    if outside:
        print("\nfrom outside the repository:")
    for src in outside:
        print(textwrap.fill(f"{src.name}: {src.origin}, {src.target}", WIDTH, initial_indent="  ",
                            subsequent_indent="    ", break_on_hyphens=False))
    return 0


def cmd_configs(args) -> int:
    rows = [("name", "d_input", "H", "P", "layers", "classes", "init", "discretization", "parameters")]
    for name, cfg in NAMED_CONFIGS.items():
        n = sum(a.size for a in S4DModel.create(cfg, 0).params.values())
        rows.append((name, cfg.d_input, cfg.H, cfg.P, cfg.n_layers, cfg.n_classes, cfg.init, cfg.discretization, n))
    print(text_table(rows, width=WIDTH))
    return 0


def cmd_model(args) -> int:
    model = S4DModel.create(get_config(args.config), args.seed)
    save_model(model, args.out)
    print(f"wrote {args.out}: config {args.config}, seed {args.seed}, params_sha256 {params_digest(model)}")
    return 0


def cmd_quantize(args) -> int:
    model = load_model(args.model)
    if args.calib == "default":
        calib, desc = None, None
    elif args.calib in FAMILIES:
        calib, desc = make_input(args.calib, model.config.d_input), f"input family {args.calib!r} (SPEC.md 9)"
    else:
        arrays = read_npz(args.calib, "calibration file")
        if "u" not in arrays:
            raise S4DInputError(f"calibration file {args.calib} has no array 'u' (N, L, d_input); it has "
                                f"{sorted(arrays)}")
        calib, desc = arrays["u"], f"file {Path(args.calib).name}"
    # the profile's format, with the fields given on the command line replaced (SPEC.md 14.9)
    fmt = format_from_profile(args.profile, msg_bits=args.msg_bits, state_bits=args.state_bits,
                              weight_bits=args.weight_bits, coef_bits=args.coef_bits, frac_bits=args.frac_bits,
                              rounding=args.rounding, rescale=args.rescale, saturation=args.saturation)
    m = quantize(model, calib, fmt, headroom_bits=args.headroom_bits, calib_description=desc)
    save_fxp(m, args.out)
    print(f"wrote {args.out}: {fmt.to_json()}")
    print(f"  inp_exp {m.inp_exp}, act_exp {list(m.act_exp)}, out_exp {m.out_exp}, w_exp {m.w_exp}")
    print(f"  calibration: {m.provenance['calibration']['description']}, shape "
          f"{m.provenance['calibration']['shape']}")
    return 0


def cmd_golden(args) -> int:
    directory = Path(args.dir) if args.dir else golden.GOLDEN_DIR
    if args.action == "generate":
        t0 = time.perf_counter()
        manifest = golden.generate(directory)
        size = sum(f.stat().st_size for f in directory.glob("*.npz"))
        worst = max(c["conv_vs_recurrence_rel_l2"] for c in manifest["cases"])
        print(f"wrote {len(manifest['cases'])} cases, {len(manifest['files'])} files, {size / 1e6:.2f} MB to "
              f"{directory} in {time.perf_counter() - t0:.1f} s; worst conv-vs-recurrence rel L2 {worst:.2e}")
        return 0
    report = golden.verify(directory, log=print if args.verbose else (lambda s: None))
    for p in report.problems:
        print(f"FAIL {p}")
    mode = "bit-identical (generator's platform)" if report.exact else f"within relative {golden.CROSS_PLATFORM_RTOL:g}"
    if report.ok:
        print(f"golden verify: OK, {report.cases} cases in {directory}: hashes match; regeneration {mode}; "
              f"max relative difference {report.worst_rel:.1e}; worst conv-vs-recurrence rel L2 "
              f"{report.worst_conv_vs_rec:.2e}")
        return 0
    print(f"golden verify: {len(report.problems)} problem(s) in {directory}")
    return 1




def cmd_check(args) -> int:
    # unknown names and bad import paths fail here (exit 2); module:Class is named module.Class in the records
    names = [get_backend(spec).name for spec in args.backend]
    verbose = getattr(args, "verbose", False)
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        raw = Path(tmp) / "records.json"
        rc = run_conformance(args.backend, raw, extra=args.pytest_args, quiet=args.quiet)
        outcomes, log = side_files(raw)
        details = log.read_text() if log.is_file() else ""
        tests = json.loads(outcomes.read_text())["tests"] if outcomes.is_file() else None
        if rc in (4, 5) and args.pytest_args:  # pytest's usage error / nothing collected: the extra arguments
            print(details, end="")
            raise S4DInputError("pytest " + ("refused the extra arguments" if rc == 4 else
                                "collected no conformance case with the extra arguments")
                                + f" {' '.join(args.pytest_args)!r} (pytest exit code {rc}; its message is above)")
        if not raw.is_file():
            print(details, end="")
            print(f"s4dconf check: the suite wrote no records (pytest exit code {rc}; pytest's output is above)")
            return rc or 1
        data = json.loads(raw.read_text())
    records = data["records"]
    n_fail = sum(r["verdict"] != "pass" for r in records)
    seconds = time.perf_counter() - t0
    if tests is not None:
        total = Counter(t["outcome"] for t in tests)
        print(f"s4dconf check: {total['passed']} passed, {total['failed'] + total['error']} failed, "
              f"{total['skipped']} skipped in {seconds:.0f} s")
        print("\n".join(check_summary(tests, names or data.get("backends", {}))))
    print()
    print("conformance matrix (worst measured value per backend and case family, and the bound it must meet):")
    print(text_table(check_matrix(records), width=WIDTH))
    fails = failing_checks(records)
    if fails:
        print("\nfailed checks:")
        print("\n".join(fails))
    if verbose and details:
        print("\ndetails (pytest's output):")
        print(details, end="" if details.endswith("\n") else "\n")
    print(f"{len(records)} measured checks, {n_fail} failed; pytest exit code {rc}"
          + ("" if verbose or not details else " (`s4dconf check -v` shows pytest's per-test lines)"))
    if args.json:
        _write_json(args.json, data, "records JSON (--json)")
        print(f"wrote {args.json}")
    return rc if rc else (1 if n_fail else 0)


def benchmark_summary(path) -> str:
    """A benchmark run in 100 columns: per benchmark its scenario, backend:path, config, batch, the median and p99
    latency per token (streaming) or per call (offline), and whether its audit passed (SPEC.md 20)."""
    rows = [("scenario", "backend:path", "config", "L", "B", "p50", "p99", "unit", "audit")]
    for b in load_run(path).benchmarks.values():
        x = b.extra_info
        lat = x.get("latency_s") if isinstance(x.get("latency_s"), dict) else {}
        unit, scale = ("us/token", 1e6) if x.get("mode") == "stream" else ("ms/call", 1e3)
        fig = lambda k: f"{lat[k] * scale:.4g}" if isinstance(lat.get(k), (int, float)) else "-"  # noqa: E731
        audit = x.get("audit") if isinstance(x.get("audit"), dict) else {}
        rows.append((x.get("scenario", "-"), f"{x.get('backend')}:{x.get('path')}", x.get("config"), x.get("L"),
                     x.get("batch", "-"), fig("p50"), fig("p99"), unit, "passed" if audit.get("passed") else "none"))
    return (text_table(rows, width=WIDTH) + f"\n{len(rows) - 1} benchmarks in {Path(path).name} (`s4dconf run -v`: "
            "pytest-benchmark's own tables)")


def cmd_run(args) -> int:
    """The main job on the embedded default: goldens, conformance of every available backend, the accuracy table of
    the shipped models, the benchmark smoke set, the resource counts, the claims and the report."""
    out = Path(args.out)
    models = Path(args.models or MODELS_DIR)
    # the accuracy step's inputs (dataset names and data, the models folder, every model file), checked before the
    # first step: a bad --dataset or --models fails now, not after the goldens and the conformance suite
    prepare_table(args.dataset, models)
    out.mkdir(parents=True, exist_ok=True)
    steps = ["golden verify", "conformance of every available backend", "accuracy table", "benchmark smoke set",
             "operation and resource counts", "claims", "report"]
    t_all = time.perf_counter()
    rcs = {}

    terminal = is_terminal()

    def step(k, fn):  # a terminal: a start line (the step's own bars follow); always: one line when it ends
        t0 = time.perf_counter()
        if terminal:
            print(f"\n[{k + 1}/{len(steps)}] {steps[k]} ... ({t0 - t_all:.0f} s elapsed)", flush=True)
        rc = fn()
        rcs[steps[k]] = rc
        print(f"[{k + 1}/{len(steps)}] {steps[k]}: {'ok' if not rc else f'exit code {rc}'} "
              f"({time.perf_counter() - t0:.0f} s)", flush=True)

    def command(*argv):  # a sub-command as the parser builds it: every option present, with its default
        sub_args = build_parser().parse_args([str(a) for a in argv])
        return lambda: sub_args.func(sub_args)

    step(0, command("golden", "verify"))
    step(1, command("check", "--json", out / "conformance.json", "--quiet"))
    step(2, command("eval", "--dataset", *args.dataset, "--models", models, "--out", out / "accuracy"))
    bench_json = out / "benchmark-smoke.json"

    def bench_smoke():  # pytest-benchmark's own tables are 230 columns wide: shown with -v, else a summary
        argv = [sys.executable, "-m", "pytest", "-q", "-m", "benchmark",
                str(conformance_dir() / "benchmarks" / "test_bench_modes.py"), "--bench-set", "smoke",
                "--benchmark-json", str(bench_json), "-p", "no:cacheprovider"]
        if args.verbose:
            return subprocess.call(argv)
        proc = subprocess.run(argv, capture_output=True, text=True)
        if proc.returncode:
            print((proc.stdout + proc.stderr)[-6000:])
            return proc.returncode
        print(benchmark_summary(bench_json))
        return 0

    step(3, bench_smoke)

    def resources():
        write_resources(out, models, args.dataset)
        return 0

    step(4, resources)

    def claims():
        files = [bench_json] + committed_benchmark_files()
        verdicts = evaluate(files, out / "accuracy" / "accuracy.json")
        (out / "claims.json").write_text(json.dumps([dataclasses.asdict(v) for v in verdicts], indent=1) + "\n")
        for v in verdicts:
            print(f"  {v.id:25s} {v.verdict}")
        return 0

    step(5, claims)

    def report():
        resources_md = out / "resources.md"
        html, md = build_report(
            out, conformance_json=out / "conformance.json", accuracy_json=out / "accuracy" / "accuracy.json",
            benchmark_jsons=[bench_json] + committed_benchmark_files(),
            claims_json=out / "claims.json",
            resources={"markdown": resources_md.read_text()} if resources_md.is_file() else None,
            sweep_json=default_report_inputs(out)["sweep"])  # run does not sweep: a fresh one here, else the committed
        print(f"  report: {html}\n  markdown: {md}")
        return 0

    step(6, report)
    failed = [k for k, rc in rcs.items() if rc]
    print(f"\ndone in {time.perf_counter() - t_all:.0f} s; " + (f"FAILED: {', '.join(failed)}" if failed else
                                                               "every step ok") + f"\nreport: {out / 'report.html'}")
    return 1 if failed else 0


def cmd_data(args) -> int:
    """`data list`: every dataset, found (sizes, source) or where it looked, from file headers, names and sizes only
    (it reads, never decodes, caches or writes); `data show NAME`: one split's numbers, from a full read."""
    # the one-time decode of an image archive (`data show`) takes seconds: say so on stderr while this command runs
    handler, level = logging.StreamHandler(sys.stderr), datafiles.log.level
    datafiles.log.addHandler(handler)
    datafiles.log.setLevel(logging.INFO)
    try:
        if args.action == "list":
            dirs = ds.resolve_data_dir(args.data_dir)
            rows, failed = [("dataset", "L x d_input", "train", "test", "source")], False
            for name in ds.DATASETS:
                sizes, notes, looked = {}, [], ()
                for split in ds.SPLITS:
                    try:
                        sizes[split], meta = ds.survey_dataset(name, split, args.data_dir)
                        notes.append(meta["source"] + (" (lossy: JPEG)" if meta["lossy"] else ""))
                    except ds.DatasetNotFound as e:
                        notes.append(f"{split} not found")
                        looked = e.looked_in
                    except S4DInputError as e:
                        failed = True
                        notes.append(f"{split}: error: {str(e).splitlines()[0]}")
                where = "; ".join(dict.fromkeys(notes))
                if len(looked) and all(n.endswith(" not found") for n in notes):
                    where = "not found; looked in " + ", ".join(map(str, looked))
                length, d_input = ds.SHAPES[name]
                rows.append((name, f"{length} x {d_input}", sizes.get("train", "-"), sizes.get("test", "-"), where))
            print(text_table(rows, width=WIDTH))
            print(f"data directories searched: {', '.join(map(str, dirs))} (--data-dir, else ${ds.ENV_VAR}, "
                  "else the defaults)\nsizes from file headers and names, nothing decoded or written "
                  "(`s4dconf data show NAME` reads all)")
            return 2 if failed else 0
        got = ds.load_dataset(args.name, args.split, args.data_dir)
        means = got.x.reshape(-1, got.d_input).mean(axis=0) * got.scale
        rows = [("field", "value"), ("dataset", f"{got.name} ({got.split})"), ("sequences", len(got)),
                ("x (N, L, d_input)", f"{got.x.shape} {got.x.dtype}, inputs = x * {got.scale:.6g}"),
                ("label histogram", " ".join(str(int(c)) for c in np.bincount(got.y, minlength=got.n_classes))),
                ("pixel mean", f"{means.mean():.4f}" + (f" (per input {', '.join(f'{m:.4f}' for m in means)})"
                                                          if got.d_input > 1 else ""))]
        for key, value in got.meta.items():
            items = value.items() if isinstance(value, dict) else [("", value)]
            rows += [(f"{key} {k}".strip(), ", ".join(map(str, v)) if isinstance(v, list) else v) for k, v in items]
        print(text_table(rows, width=WIDTH))
        return 0
    finally:
        datafiles.log.removeHandler(handler)
        datafiles.log.setLevel(level)


def cmd_train(args) -> int:
    """Train a recipe's float model, then PTQ and QAFT (SPEC.md 18): writes <out-dir>/<recipe>-<stage>.npz."""
    if args.data_dir is not None and not Path(args.data_dir).is_dir():
        raise S4DInputError(f"data folder (--data-dir) {args.data_dir} does not exist or is not a folder; pass the "
                            "folder that holds mnist/ and cifar10/ (see `s4dconf data list`)")
    get_recipe(args.recipe)  # an unknown name fails here with the list of known ones
    device = choose_device(args.device)
    overrides = {k: v for k, v in (("epochs", args.epochs), ("max_steps", args.max_steps), ("seed", args.seed))
                 if v is not None}
    log = make_models(args.recipe, args.out_dir, stages=args.stage, data_dir=args.data_dir,
                      device=device, resume=args.resume, progress=not args.quiet, **overrides)
    for stage in args.stage:
        rec = log.get(stage, {})
        acc = rec.get("test_accuracy_training_forward")
        print(f"{args.recipe}-{stage}: " + (f"test accuracy {acc:.4f} (training forward pass)" if acc is not None
                                            else "written") + f" -> {Path(args.out_dir) / f'{args.recipe}-{stage}.npz'}")
    return 0


def cmd_eval(args) -> int:
    """The accuracy table: each model file x backend on the full test split (SPEC.md 18.4)."""
    if args.data_dir is not None and not Path(args.data_dir).is_dir():
        raise S4DInputError(f"data folder (--data-dir) {args.data_dir} does not exist or is not a folder; pass the "
                            "folder that holds mnist/ and cifar10/ (see `s4dconf data list`)")
    if args.jpeg_check is not None:
        return _eval_jpeg_check(args)
    # the table to merge into is read and checked before anything is measured
    base = load_table(args.merge, "accuracy table to merge into (--merge)") if args.merge else None
    with _eval_pool(args) as pool:
        table = accuracy_table(args.dataset, Path(args.models), args.data_dir, args.limit, args.backend or None,
                               runner=pool.runner)
    if base is not None:
        table = merge_tables(base, table)
    j, m = write_table(table, args.out)
    print(Path(m).read_text())
    print(f"wrote {j} and {m}")
    return 0


def _eval_pool(args) -> EvalPool:
    """Where eval and sweep run their shards (SPEC.md 18.7): --scheduler, else a LocalCluster (--workers), else one
    process (--no-dask, or dask not installed); printed first."""
    if args.scheduler and (args.no_dask or args.workers):
        raise S4DInputError("--scheduler uses an existing Dask cluster: it takes neither --no-dask nor --workers "
                            "(the cluster has its own workers)")
    pool = EvalPool(args.scheduler, args.workers, use_dask=not args.no_dask)
    print(f"evaluation: {pool.description}", flush=True)
    return pool


def cmd_sweep(args) -> int:
    """Precision sweep (SPEC.md 18.8): PTQ at each format of the grid, accuracy with numpy-fxp on the test split ->
    <out>/sweep.{json,md,png}."""
    if args.qaft_max_steps is not None and not args.qaft_at:
        raise S4DInputError("--qaft-max-steps limits the fine-tuning of --qaft-at; name the points with --qaft-at")
    if args.data_dir is not None and not Path(args.data_dir).is_dir():
        raise S4DInputError(f"data folder (--data-dir) {args.data_dir} does not exist or is not a folder")
    grid, product = sweeps.read_grid_file(args.grid_file) if args.grid_file else ({}, False)
    for field, values in sweeps.parse_grid_args(args.grid).items():
        if field in grid:
            raise S4DInputError(f"--grid {field} is also in the grid file {args.grid_file}; give it once")
        grid[field] = values
    out = Path(args.out)
    inputs = sweeps.sweep_inputs(args.model, args.dataset, grid, args.recipe, args.data_dir)
    qaft = (sweeps.QaftPlan(tuple(args.qaft_at), args.recipe or args.dataset, out / "qaft", args.data_dir,
                            args.qaft_max_steps) if args.qaft_at else None)
    previous = None
    if args.resume and (out / "sweep.json").is_file():
        previous = sweeps.load_sweep(out / "sweep.json")
        print(f"resuming the sweep in {out}: {len(previous['points'])} points measured before")
    elif args.resume:
        print(f"--resume: no sweep in {out} yet; starting one")
    with _eval_pool(args) as pool:
        doc = sweeps.sweep(*inputs, pool, product=product or args.product, limit=args.limit,
                           on_point=lambda d: sweeps.write_sweep(d, out), qaft=qaft,
                           previous=previous)  # a long sweep's progress is on disk
    j, m = sweeps.write_sweep(doc, out)
    img = sweep_plot(doc, out, "sweep.png")
    print(Path(m).read_text())
    print(f"wrote {j}, {m} and {out / img.name} ({doc['seconds']} s)")
    return 0


def _eval_jpeg_check(args) -> int:
    """`eval --jpeg-check [MODEL ...]`: sCIFAR models on the lossless and the JPEG copies of the same training images
    (SPEC.md 18.6): <out>/jpeg_check.{json,md}."""
    if args.merge or args.backend:
        raise S4DInputError("--jpeg-check runs each model on its table column (float: reference, fixed point: "
                            "numpy-fxp) and writes jpeg_check.json; it takes no --merge or --backend")
    doc = jpeg_check(args.jpeg_check or ["scifar"], Path(args.models), args.data_dir, args.limit)
    j, m = write_jpeg_check(doc, args.out)
    print(Path(m).read_text())
    print(f"wrote {j} and {m}")
    return 0


def cmd_paper_run(args) -> int:
    """The paper-size recipes trained, quantised, fine-tuned and evaluated on a GPU; rows merged into the accuracy
    table (SPEC.md 18.5)."""
    if args.data_dir is not None and not Path(args.data_dir).is_dir():
        raise S4DInputError(f"data folder (--data-dir) {args.data_dir} does not exist or is not a folder; pass the "
                            "folder that holds mnist/ and cifar10/ (see `s4dconf data list`)")
    log = paper_run(args.recipes, Path(args.out_dir), args.device, Path(args.table), args.max_steps, args.limit,
                    args.batch_size, args.qaft_batch, args.data_dir, args.resume, train_progress=not args.quiet)
    for name, rec in log["recipes"].items():
        print(f"{name}: " + ", ".join(f"{k} {v} s" for k, v in rec["seconds"].items()) + f" on {log['device']}")
    print(f"wrote {Path(args.out_dir) / 'paper-run.log.json'} and merged the rows into {Path(args.table)}")
    return 0


def cmd_claims(args) -> int:
    """Every claim of reports/claims.toml with its verdict, computed from measured JSON only (SPEC.md 21)."""
    files = args.bench or default_benchmark_files()
    verdicts = evaluate(files, args.accuracy)
    rows = [("claim", "source grade", "verdict", "note")]
    for v in verdicts:
        rows.append((v.id, grade_text(v.grade), v.verdict, (v.note or "")[:110]))
    print(text_table(rows, width=WIDTH))
    versions = [(v.id, e) for v in verdicts for e in v.also_quoted]
    if versions:
        print("\nfigures that another source quotes differently (the verdict above tests the claim's own figure):")
        for cid, e in versions:
            print(textwrap.fill(f"{cid}: {e['quoted']} ({grade_text(e['grade'])}: {e['source']})", WIDTH,
                                initial_indent="  ", subsequent_indent="    "))
    print("\nsource grades (SPEC.md 21.1), strongest first:")
    for g, d in GRADES.items():
        print(textwrap.fill(f"{g}: {d}", WIDTH, initial_indent="  ", subsequent_indent="    "))
    print(f"\nfrom {len(files)} benchmark file(s): {', '.join(Path(f).name for f in files) or 'none'}")
    if args.json:
        _write_json(args.json, [dataclasses.asdict(v) for v in verdicts], "verdicts JSON (--json)")
        print(f"wrote {args.json}")
    return 0


def cmd_vectors(args) -> int:
    """`vectors export`: the golden cases as raw binary files with index.json, for testbenches in other languages;
    `vectors verify`: an outside implementation's outputs judged as `s4dconf check` judges a backend (SPEC.md 10.1)."""
    if args.action == "export":
        index = export_vectors(args.dir, args.numeric_class, args.config, args.case)
        c_note = "; cases.txt is the manifest the C99 implementation reads (conformance/c/s4d_fxp.c)"
        print(f"wrote {len(index['cases'])} {args.numeric_class} cases ({len(index['models'])} models) to {args.dir}: "
              "index.json describes every file" + (c_note if args.numeric_class == "fixed-point" else ""))
        return 0
    verdict = verify_vectors(args.dir, args.outputs, name=args.name, require_all=args.require_all)
    records = verdict.records
    print(f"vectors verify: {verdict.cases} {verdict.numeric_class} cases of {args.dir}, outputs in {args.outputs}")
    print(text_table(check_matrix(records), width=WIDTH))
    fails = failing_checks(records)
    if fails:
        print("\nfailed checks:\n" + "\n".join(fails))
    where = [describe_difference(r) for r in verdict.failed if "first_difference" in r]
    if where:
        print("\nwhere the integers first differ (earliest stage of each case first):")
        print("\n".join(textwrap.fill(w, WIDTH, initial_indent="  ", subsequent_indent="    ") for w in where[:20]))
    if verdict.not_provided:
        print(f"\nnot provided, so not checked (optional; --require-all requires them): {len(verdict.not_provided)} "
              f"outputs, e.g. {', '.join(verdict.not_provided[:3])}")
    print(f"{len(records)} measured checks, {len(verdict.failed)} failed")
    if args.json:
        _write_json(args.json, {"spec_version": s4dconf.SPEC_VERSION, "s4dconf": s4dconf.__version__,
                                "vectors": str(args.dir), "outputs": str(args.outputs),
                                "numeric_class": verdict.numeric_class, "not_provided": verdict.not_provided,
                                "records": records}, "records JSON (--json)")
        print(f"wrote {args.json}")
    return 1 if verdict.failed else 0


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="s4dconf", description=f"S4D conformance suite {s4dconf.__version__} "
                                f"(SPEC.md version {s4dconf.SPEC_VERSION})", epilog=EPILOG,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--version", action="version", version=f"s4dconf {s4dconf.__version__}")
    sub = p.add_subparsers(dest="command", required=True)
    b = sub.add_parser("backends", help="list backends: name, origin, availability with reason, version")
    b.add_argument("--backend", action="append", default=[], metavar="NAME",
                   help="list this one too: an import path module:Class (or a registered name); repeatable")
    b.set_defaults(func=cmd_backends)
    sub.add_parser("configs", help="list the named model configs").set_defaults(func=cmd_configs)
    for add in (_add_model_commands, _add_check_commands, _add_data_commands, _add_eval_commands,
                _add_vectors_commands, register_bench, register_report):
        add(sub)
    return p


def _add_model_commands(sub) -> None:
    """`model`, `quantize`, `golden`: model files and goldens."""
    m = sub.add_parser("model", help="write the float64 model file of a named config and seed")
    m.add_argument("--config", required=True)
    m.add_argument("--seed", type=NON_NEGATIVE_INT, default=0)
    m.add_argument("--out", required=True)
    m.set_defaults(func=cmd_model)
    q = sub.add_parser("quantize", help="post-training quantisation of a float64 model file (SPEC.md 15)")
    q.add_argument("model", help="float64 model file (.npz)")
    q.add_argument("--calib", default="default",
                   help="'default' (SPEC.md 15.2), an input family name, or an .npz with array u (N, L, d_input)")
    q.add_argument("--out", required=True, help="fixed-point model file to write")
    q.add_argument("--profile", default=DEFAULT_PROFILE, choices=list(FORMAT_PROFILES),
                   help="named format (SPEC.md 14.9); the options below replace single fields of it")
    q.add_argument("--frac-bits", type=int, default=None)
    q.add_argument("--coef-bits", type=int, default=None)
    q.add_argument("--msg-bits", type=int, default=None)
    q.add_argument("--state-bits", type=int, default=None)
    q.add_argument("--weight-bits", type=int, default=None)
    q.add_argument("--rounding", default=None, choices=list(ROUNDING_MODES))
    q.add_argument("--rescale", default=None, choices=list(RESCALE_MODES))
    q.add_argument("--saturation", default=None, choices=list(SATURATION_MODES))
    q.add_argument("--headroom-bits", type=NON_NEGATIVE_INT, default=1)
    q.set_defaults(func=cmd_quantize)
    g = sub.add_parser("golden", help="generate or verify the golden outputs")
    g.add_argument("action", choices=["generate", "verify"])
    g.add_argument("--dir", default=None, help="golden directory (default: goldens/data)")
    g.add_argument("-v", "--verbose", action="store_true")
    g.set_defaults(func=cmd_golden)


def _add_check_commands(sub) -> None:
    """`check` and `run`: conformance and the main job."""
    c = sub.add_parser("check", help="run the conformance suite for backends; print the pass/fail matrix")
    c.add_argument("--backend", action="append", default=[],
                   help="a registered name or an import path module:Class; repeatable; default: every registered "
                        "backend")
    c.add_argument("--json", default=None, help="write one record per case, metric and probe to this file")
    c.add_argument("-q", "--quiet", action="store_true", help="no progress line")
    c.add_argument("-v", "--verbose", action="store_true", help="after the summary, pytest's per-test lines")
    c.add_argument("pytest_args", nargs="*", help="extra pytest arguments after --")
    c.set_defaults(func=cmd_check)
    r = sub.add_parser("run", help="the main job: goldens, conformance, accuracy, benchmark smoke set, claims, report")
    r.add_argument("--out", default="reports/out", help="output directory (default: reports/out)")
    r.add_argument("-v", "--verbose", action="store_true", help="show pytest's own output of the benchmark step")
    r.add_argument("--dataset", nargs="+", default=["sdigits"],
                   help="datasets of the accuracy table (default: sdigits, the embedded one; add smnist with MNIST)")
    r.add_argument("--models", default=None, help="folder of the model files (default: the shipped models)")
    r.set_defaults(func=cmd_run)


def _add_data_commands(sub) -> None:
    """`data` and `train`: datasets and training."""
    d = sub.add_parser("data", help="training datasets: list them (found or where it looked), or show one split")
    dsub = d.add_subparsers(dest="action", required=True)
    dlist = dsub.add_parser("list", help="each dataset: found with train/test sizes and source, or where it looked")
    dshow = dsub.add_parser("show", help="one split: counts, label histogram, pixel mean, source, lossy flag, hashes")
    dshow.add_argument("name", help="dataset name (see `s4dconf data list`)")
    dshow.add_argument("--split", default="train", choices=["train", "test"])
    for dp in (dlist, dshow):
        dp.add_argument("--data-dir", default=None, help="data directory (default: $S4DCONF_DATA, else "
                        "<repository>/../shared/data); holds mnist/ and cifar10/")
    d.set_defaults(func=cmd_data)
    t = sub.add_parser("train", help="train a recipe (float), quantise it (PTQ) and fine-tune it (QAFT)")
    t.add_argument("recipe", help="sdigits, smnist, psmnist, scifar, paper-smnist, paper-psmnist, paper-scifar")
    t.add_argument("--stage", nargs="+", default=["float", "ptq", "qaft"], choices=["float", "ptq", "qaft"])
    t.add_argument("--out-dir", default="models-out", help="where the model files and <recipe>.log.json go")
    t.add_argument("--epochs", type=POSITIVE_INT, default=None, help="override the recipe's float epochs")
    t.add_argument("--max-steps", type=POSITIVE_INT, default=None,
                   help="stop after this many optimiser steps per stage")
    t.add_argument("--seed", type=NON_NEGATIVE_INT, default=None)
    t.add_argument("--resume", action="store_true", help="continue the float stage from <out-dir>/<recipe>-float.ckpt")
    t.add_argument("--device", default=None, help="auto | cpu | cuda (default: $S4DCONF_TORCH_DEVICE, else auto)")
    t.add_argument("--data-dir", default=None)
    t.add_argument("-q", "--quiet", action="store_true")
    t.set_defaults(func=cmd_train)


def _add_eval_commands(sub) -> None:
    """`eval` and `claims`: the accuracy table and the claims' verdicts."""
    e = sub.add_parser("eval", help="the accuracy table (JSON + Markdown): model files x backends, full test split")
    e.add_argument("--dataset", nargs="+", default=["sdigits"], help="datasets (default: sdigits)")
    e.add_argument("--models", default=str(MODELS_DIR), help="folder of <dataset>-<float|ptq|qaft>.npz")
    e.add_argument("--backend", action="append", default=[], help="restrict to these columns (repeatable)")
    e.add_argument("--limit", type=POSITIVE_INT, default=None,
                   help="first N test samples only (labelled as a subset; claims read from it are marked partial)")
    e.add_argument("--out", default="reports/accuracy", help="output folder (default: reports/accuracy)")
    e.add_argument("--data-dir", default=None)
    e.add_argument("--merge", default=None, metavar="ACCURACY_JSON",
                   help="put the measured cells into this existing table (e.g. the Lava columns, from the Lava env)")
    _add_dask_flags(e)
    sw = sub.add_parser("sweep", help="precision sweep: PTQ at each format of a grid, accuracy with numpy-fxp, table "
                                      "and plot (SPEC.md 18.8)")
    sw.add_argument("model", help="float64 model file (.npz), e.g. training/models/smnist-float.npz")
    sw.add_argument("--dataset", required=True, help="the dataset whose test split is measured, e.g. smnist")
    sw.add_argument("--grid", action="append", default=[], metavar="FIELD=V1,V2,...",
                    help="values of one FxpFormat field, repeatable: weight_bits, frac_bits, coef_bits, msg_bits, "
                         "state_bits, rounding, ...")
    sw.add_argument("--grid-file", default=None, help="a TOML file: [grid] FIELD = [values], product = true|false")
    sw.add_argument("--product", action="store_true", help="also every combination of the grid's values")
    sw.add_argument("--recipe", default=None, help="whose PTQ calibration set to use (default: the dataset's recipe)")
    sw.add_argument("--limit", type=POSITIVE_INT, default=None, help="first N test samples only (a subset)")
    sw.add_argument("--qaft-at", nargs="+", default=None, metavar="POINT",
                    help="also fine-tune (QAFT, the recipe's settings) at these points, named as in the table, e.g. "
                         "'weight_bits=4' paper; models in <out>/qaft/")
    sw.add_argument("--qaft-max-steps", type=POSITIVE_INT, default=None,
                    help="at most this many QAFT optimiser steps per point (default: the recipe's)")
    sw.add_argument("--out", default="reports/out/sweep", help="output folder (default: reports/out/sweep)")
    sw.add_argument("--resume", action="store_true",
                    help="keep the points the sweep.json in --out measured (same model, data, samples, calibration) "
                         "and evaluate only the others")
    sw.add_argument("--data-dir", default=None)
    _add_dask_flags(sw)
    sw.set_defaults(func=cmd_sweep)
    e.add_argument("--jpeg-check", nargs="*", default=None, metavar="MODEL",
                   help="instead of the table: sCIFAR models <MODEL>-<kind>.npz (default scifar) on the lossless and "
                        "the JPEG copies of the same 4,000 training images -> <out>/jpeg_check.{json,md}")
    e.set_defaults(func=cmd_eval)
    pr = sub.add_parser("paper-run", help="train (float), quantise (PTQ), fine-tune (QAFT) and evaluate the paper-size "
                        "recipes on a GPU; merge their rows into the accuracy table")
    pr.add_argument("--device", default="cuda", help="cuda (default; refused without CUDA) | cpu (slow) | auto")
    pr.add_argument("--recipes", nargs="+", default=list(PAPER_RECIPES), help=f"default: {' '.join(PAPER_RECIPES)}")
    pr.add_argument("--out-dir", default=str(MODELS_DIR), help="model files, logs, paper-run.log.json "
                    "(default: training/models)")
    pr.add_argument("--table", default=str(TABLE_DIR), help="the accuracy table folder to merge into "
                    "(default: reports/accuracy)")
    pr.add_argument("--max-steps", type=POSITIVE_INT, default=None, help="optimiser steps per stage (a short run)")
    pr.add_argument("--limit", type=POSITIVE_INT, default=None, help="first N test samples in the table (a subset)")
    pr.add_argument("--batch-size", type=POSITIVE_INT, default=None, help="float training batch (default: recipe's)")
    pr.add_argument("--qaft-batch", type=POSITIVE_INT, default=PAPER_QAFT_BATCH,
                    help=f"QAFT batch (default {PAPER_QAFT_BATCH}: its memory grows with batch x sequence length)")
    pr.add_argument("--resume", action="store_true", help="continue each float stage from its checkpoint")
    pr.add_argument("--data-dir", default=None)
    pr.add_argument("-q", "--quiet", action="store_true")
    pr.set_defaults(func=cmd_paper_run)
    cl = sub.add_parser("claims", help="the paper's claims (reports/claims.toml), each with a verdict from measurements")
    cl.add_argument("--bench", nargs="*", default=None,
                    help="pytest-benchmark JSON files (default: reports/benchmarks/*.json and reports/out/benchmark*.json)")
    cl.add_argument("--accuracy", default=None, help="accuracy.json (default: reports/out/accuracy, else reports/accuracy)")
    cl.add_argument("--json", default=None, help="write the verdicts as JSON here")
    cl.set_defaults(func=cmd_claims)


def _add_dask_flags(p) -> None:
    """Where eval and sweep evaluate (SPEC.md 18.7)."""
    p.add_argument("--scheduler", default=None, metavar="tcp://HOST:PORT",
                   help="an existing Dask scheduler (`dask scheduler`, `dask worker`); default: a LocalCluster here")
    p.add_argument("--workers", type=POSITIVE_INT, default=None,
                   help="worker processes of the LocalCluster (default: this machine's cores)")
    p.add_argument("--no-dask", action="store_true", help="evaluate in this process only")


def _add_vectors_commands(sub) -> None:
    """`vectors export` and `vectors verify`: test vectors for implementations outside Python (SPEC.md 10.1)."""
    v = sub.add_parser("vectors", help="export the golden cases as binary test vectors, or verify an outside "
                       "implementation's outputs against them")
    vsub = v.add_subparsers(dest="action", required=True)
    ex = vsub.add_parser("export", help="write the cases as raw little-endian .bin files with index.json")
    ex.add_argument("dir", help="a new or empty folder")
    ex.add_argument("--numeric-class", default="fixed-point", choices=NUMERIC_CLASSES,
                    help="float64: the float goldens (SPEC.md 10); fixed-point: the integer goldens (14.7), "
                         "with cases.txt for the C99 implementation (default)")
    ex.add_argument("--config", nargs="+", default=[], help="only these named configs")
    ex.add_argument("--case", action="append", default=[], help="only this case id, e.g. tiny/noise (repeatable)")
    ve = vsub.add_parser("verify", help="judge the outputs an outside implementation wrote (OUT/<case id>/<name>.bin)")
    ve.add_argument("dir", help="the folder `vectors export` wrote")
    ve.add_argument("--outputs", required=True, help="the implementation's output folder")
    ve.add_argument("--name", default="outside", help="the implementation's name in the records (default: outside)")
    ve.add_argument("--require-all", action="store_true",
                    help="every expected file must be provided (default: logits and step_logits)")
    ve.add_argument("--json", default=None, help="write the records (the format of `s4dconf check --json`) here")
    v.set_defaults(func=cmd_vectors)

def main(argv=None) -> int:
    """The exit code: 0 all passed, 1 a check failed, 2 bad input. Only bad input (S4DInputError, or argparse's
    refusal of an argument) is turned into a message; any other exception is a bug and keeps its traceback."""
    try:
        args = build_parser().parse_args(argv)
    except SystemExit as e:  # argparse: --help/--version (0) or a refused argument (2, its message printed)
        return e.code if isinstance(e.code, int) else (0 if e.code is None else 2)
    try:
        check_outputs(args)
        return args.func(args)
    except S4DInputError as e:
        print(f"s4dconf {args.command}: error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
