"""`faceid`: the demo application's command line, and the params file's tools.

    faceid enroll   --folder people/ | --crops data/crops   → data/galleries/<model>.npz
    faceid identify photo.jpg …  [--json]                   → every face, top-k names
    faceid serve                                            → a local web page
    faceid profile celeba-study                             → params.yaml + configs/celeba-study.yaml
    faceid check-params                                     → every section of params.yaml validated
    faceid experiments [--md | --csv]                       → dvc exp show as one compact table
    faceid status                                           → the models a params edit retrains
    faceid --version

See docs/demo.md and docs/ARCHITECTURE.md ("Config"). Exit status: 0 done, 1 some photo
could not be used (each named on stderr), 2 nothing could run (no model, gallery or
evaluation; bad params).
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path
from typing import TYPE_CHECKING, NoReturn

from faceid import __version__
from faceid.errors import FaceidError, format_error

if TYPE_CHECKING:
    from faceid.demo.catalog import DemoPaths
    from faceid.demo.identify import PhotoResult

# torch, facenet-pytorch, scikit-learn, pandas and dvclive load in the subcommands that
# use them (the demo's), so `faceid --help`, `--version` and the params and experiment
# tools start in well under a second instead of ~9 s

__all__ = ["main"]

log = logging.getLogger("faceid")

EXIT_OK, EXIT_BAD_INPUT, EXIT_SETUP = 0, 1, 2


def _paths(args: argparse.Namespace) -> DemoPaths:
    from faceid.demo.catalog import DemoPaths

    return DemoPaths(Path(args.models_dir), Path(args.galleries_dir), Path(args.eval_dir))


def _enroll(args: argparse.Namespace) -> int:
    from faceid.config.whole import load_all_params

    params = load_all_params(args.params)  # a bad value is reported before torch loads (seconds)
    from faceid.demo.catalog import resolve_model
    from faceid.demo.faces import load_embedder
    from faceid.demo.gallery import enroll_crops, enroll_folder, save_gallery

    demo = params.demo
    entry = resolve_model(args.model or demo.model, _paths(args))
    embedder = load_embedder(entry.model_path, params.crop, params.evaluate.flip_average, demo.device)
    if args.folder:
        gallery = enroll_folder(
            args.folder, embedder, max_side=demo.detect_max_side, min_probability=demo.min_face_probability,
            max_pixels=demo.max_image_pixels, batch_size=demo.batch_size,
        )  # fmt: skip
    else:
        gallery = enroll_crops(args.crops, embedder, partition=args.partition, batch_size=demo.batch_size)
    out = save_gallery(gallery, args.out or entry.gallery_path)
    skipped = gallery.meta["skipped"]
    print(
        f"{out}: {len(gallery.embeddings)} faces of {len(gallery.identities)} identities enrolled with "
        f"{entry.model_path}" + (f"; skipped {skipped}" if skipped else "")
    )
    return EXIT_OK


def _describe(result: PhotoResult) -> str:
    threshold = result.threshold
    lines = [f"{result.photo}: {len(result.faces)} face(s); threshold {threshold.value:.4f} ({threshold.source})"]
    for i, face in enumerate(result.faces, start=1):
        box = ", ".join(f"{v:.0f}" for v in face.box)
        ranked = " | ".join(f"{c.name} {c.similarity:.3f}" for c in face.candidates)
        name = face.name if face.known else face.name.upper()
        lines.append(f"  face {i} [{box}] p={face.probability:.3f}: {name}   ({ranked})")
    if result.n_faces_not_shown:
        lines.append(f"  {result.n_faces_not_shown} more face(s) not identified (demo.max_faces or crop failed)")
    return "\n".join(lines)


def _identify(args: argparse.Namespace) -> int:
    from faceid.config.whole import load_all_params

    params = load_all_params(args.params)  # a bad value is reported before torch loads (seconds)
    from faceid.demo.catalog import open_identifier, resolve_model
    from faceid.demo.faces import DemoInputError, read_image
    from faceid.demo.identify import failed_photo

    entry = resolve_model(args.model or params.demo.model, _paths(args))
    identifier = open_identifier(
        entry, params, gallery_path=Path(args.gallery) if args.gallery else None,
        threshold=args.threshold, top_k=args.top_k,
    )  # fmt: skip
    status, photos = EXIT_OK, []
    for photo in args.photos:
        try:
            image = read_image(Path(photo), photo, params.demo.max_image_pixels)
            result = identifier.identify(image, photo)
        except DemoInputError as exc:
            print(format_error(exc), file=sys.stderr)
            photos.append(failed_photo(photo, str(exc)))
            status = EXIT_BAD_INPUT
            continue
        photos.append(result.to_dict())
        if not args.json:
            print(_describe(result))
    if args.json:
        print(json.dumps({"model": str(entry.model_path), "gallery": str(args.gallery or entry.gallery_path),
                          "photos": photos}, indent=2))  # fmt: skip
    return status


def _serve(args: argparse.Namespace) -> int:
    from faceid.config.whole import load_all_params
    from faceid.demo.server import create_app  # Flask only when serving

    params = load_all_params(args.params)
    app = create_app(_paths(args), params, threshold=args.threshold)
    host, port = args.host or params.demo.host, args.port if args.port is not None else params.demo.port
    print(f"faceid demo on http://{host}:{port}/ (Ctrl-C stops it)")
    app.run(host=host, port=port, threaded=True)
    return EXIT_OK


def _profile(args: argparse.Namespace) -> int:
    from faceid.config.profile import apply_profile

    path = apply_profile(args.name, args.params, args.profiles_dir)
    print(f"{args.params}: merged with the overrides of {path} and validated (`git diff {args.params}` shows them)")
    return EXIT_OK


def _check_params(args: argparse.Namespace) -> int:
    import dataclasses

    from faceid.config.whole import load_all_params

    params = load_all_params(args.params)
    print(f"{args.params}: valid ({', '.join(f.name for f in dataclasses.fields(params))})")
    return EXIT_OK


def _add_params_commands(sub: argparse._SubParsersAction) -> None:
    profile = sub.add_parser("profile", help="merge a profile's overrides (configs/<name>.yaml) into params.yaml")
    profile.add_argument("name", help="a profile name under --profiles-dir (celeba-study) or a YAML path")
    profile.add_argument("--params", default="params.yaml", help="the params file rewritten (comments kept)")
    profile.add_argument("--profiles-dir", default="configs")
    profile.set_defaults(run=_profile)
    check = sub.add_parser("check-params", help="validate every section of a params file, the demo's included")
    check.add_argument("--params", default="params.yaml")
    check.set_defaults(run=_check_params)


def _experiments(args: argparse.Namespace) -> int:
    from faceid.project.experiments import (
        build_table,
        load_experiments,
        parse_experiments,
        render_csv,
        render_markdown,
        render_text,
    )

    extra = (["--all-commits"] if args.all_commits else []) + (["-n", str(args.num)] if args.num else [])
    rows = parse_experiments(load_experiments(args.json_file, extra), args.params, args.summary)
    table = build_table(rows, args.metric) if args.metric else build_table(rows)
    if args.csv:
        print(render_csv(table), end="")
    elif args.md:
        print(render_markdown(table, args.width), end="")
    else:
        print(render_text(table, args.width), end="")
    return EXIT_OK


def _status(args: argparse.Namespace) -> int:
    from faceid.project.plan import make_plan, render_plan

    plan = make_plan(".", args.params)
    if args.json:
        print(json.dumps({"stages": plan.stages, "why": plan.why}, indent=2))
    else:
        print(render_plan(plan, args.verbose), end="")
    return EXIT_OK


def _add_dvc_commands(sub: argparse._SubParsersAction) -> None:
    exp = sub.add_parser(
        "experiments", help="DVC's experiments as one compact table: differing params, headline metrics"
    )
    exp.add_argument("--params", default="params.yaml", help="the params file whose values are compared")
    exp.add_argument(
        "--summary", default="metrics/summary.json", help="the metrics file the headline numbers come from"
    )
    exp.add_argument("--metric", action="append", metavar="PATTERN",
                     help="headline metric keys to show (glob on the key's last part, repeatable; "
                          "default: *orig_auc*, *tar_at_*, *mean_delta*)")  # fmt: skip
    exp.add_argument("--width", type=int, default=120, help="widest line of the text table (default 120)")
    exp.add_argument("-A", "--all-commits", action="store_true", help="experiments of every commit (dvc exp show -A)")
    exp.add_argument("-n", "--num", type=int, help="this many commits back from HEAD (dvc exp show -n)")
    exp.add_argument("--json-file", help="read this saved `dvc exp show --json` output instead of running it")
    fmt = exp.add_mutually_exclusive_group()
    fmt.add_argument("--md", action="store_true", help="a Markdown table")
    fmt.add_argument("--csv", action="store_true", help="CSV: every differing param and headline metric, full names")
    exp.set_defaults(run=_experiments)
    status = sub.add_parser("status", help="which models a params edit retrains and re-evaluates (before `dvc repro`)")
    status.add_argument("--params", default="params.yaml")
    status.add_argument("--json", action="store_true", help="machine-readable: stages in run order, and why")
    status.add_argument("-v", "--verbose", action="store_true", help="every reason, not the first 8")
    status.set_defaults(run=_status)


class _Parser(argparse.ArgumentParser):
    """argparse's usage errors as one `error:` line, like every other faceid error."""

    def error(self, message: str) -> NoReturn:
        print(f"error: {self.prog}: {message} (see `{self.prog} --help`)", file=sys.stderr)
        raise SystemExit(EXIT_SETUP)


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="faceid",
        description="faceid demo: enrol people, identify faces in photos; params, experiment and pipeline tools.",
    )
    parser.add_argument("--version", action="version", version=f"faceid {__version__}")
    common = _Parser(add_help=False)
    common.add_argument("--params", default="params.yaml", help="params file (section demo; crop, evaluate)")
    common.add_argument("--models-dir", default="data/models", help="folders <name>/model.pt")
    common.add_argument("--galleries-dir", default="data/galleries", help="galleries <name>.npz")
    common.add_argument("--eval-dir", default="metrics/eval", help="evaluations <name>.json (thresholds)")
    sub = parser.add_subparsers(dest="command", required=True)

    enroll = sub.add_parser("enroll", parents=[common], help="build a gallery for a model")
    enroll.add_argument("--model", help="model name under --models-dir, or a model.pt path (default: demo.model)")
    source = enroll.add_mutually_exclusive_group(required=True)
    source.add_argument("--folder", help="a folder of identity sub-folders of photos (folder name = identity)")
    source.add_argument("--crops", help="the crop cache (data/crops): enrol a partition's identities by id")
    enroll.add_argument("--partition", default="test", choices=("train", "val", "test"), help="with --crops")
    enroll.add_argument("--out", help="gallery file (default: <galleries-dir>/<model>.npz)")
    enroll.set_defaults(run=_enroll)

    identify = sub.add_parser("identify", parents=[common], help="name every face of photos")
    identify.add_argument("photos", nargs="+", metavar="PHOTO")
    identify.add_argument("--model", help="model name or model.pt path (default: demo.model)")
    identify.add_argument("--gallery", help="gallery file (default: <galleries-dir>/<model>.npz)")
    identify.add_argument(
        "--threshold",
        type=float,
        help="cosine similarity above which a face is named (default: the evaluation's at demo.fmr)",
    )
    identify.add_argument("--top-k", type=int, help="candidates per face (default: demo.top_k)")
    identify.add_argument("--json", action="store_true", help="machine-readable output on stdout")
    identify.set_defaults(run=_identify)

    serve = sub.add_parser("serve", parents=[common], help="a local web page to upload photos")
    serve.add_argument("--host", help="default: demo.host")
    serve.add_argument("--port", type=int, help="default: demo.port")
    serve.add_argument("--threshold", type=float, help="for every model, instead of the evaluations'")
    serve.set_defaults(run=_serve)
    _add_params_commands(sub)
    _add_dvc_commands(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    if getattr(args, "top_k", None) is not None and args.top_k < 1:
        print("error: faceid identify: --top-k: expected an integer >= 1", file=sys.stderr)
        return EXIT_SETUP
    try:
        return args.run(args)
    except FaceidError as exc:  # the project's own errors: one line, no traceback
        print(format_error(exc), file=sys.stderr)
        return EXIT_SETUP


if __name__ == "__main__":
    sys.exit(main())
