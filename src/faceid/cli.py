"""`faceid`: the demo application's command line, and the params file's tools.

    faceid enroll   --folder people/ | --crops data/crops   → data/galleries/<model>.npz
    faceid identify photo.jpg …  [--json]                   → every face, top-k names
    faceid serve                                            → a local web page
    faceid profile celeba-study                             → params.yaml + configs/celeba-study.yaml
    faceid check-params                                     → every section of params.yaml validated

See docs/demo.md and docs/ARCHITECTURE.md ("Config"). Exit status: 0 done, 1 some photo
could not be used (each named on stderr), 2 nothing could run (no model, gallery or
evaluation; bad params).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import sys
from pathlib import Path

from faceid.config.profile import apply_profile
from faceid.config.whole import load_params
from faceid.demo.catalog import DemoPaths, open_identifier, resolve_model
from faceid.demo.faces import DemoInputError, load_embedder, read_image
from faceid.demo.gallery import enroll_crops, enroll_folder, save_gallery
from faceid.demo.identify import PhotoResult, failed_photo
from faceid.errors import FaceidError, format_error

__all__ = ["main"]

log = logging.getLogger("faceid")

EXIT_OK, EXIT_BAD_INPUT, EXIT_SETUP = 0, 1, 2


def _paths(args: argparse.Namespace) -> DemoPaths:
    return DemoPaths(Path(args.models_dir), Path(args.galleries_dir), Path(args.eval_dir))


def _enroll(args: argparse.Namespace) -> int:
    params = load_params(args.params)
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
    lines = [f"{result.photo}: {len(result.faces)} face(s); threshold {result.threshold.value:.4f} ({result.threshold.source})"]
    for i, face in enumerate(result.faces, start=1):
        box = ", ".join(f"{v:.0f}" for v in face.box)
        ranked = " | ".join(f"{c.name} {c.similarity:.3f}" for c in face.candidates)
        lines.append(f"  face {i} [{box}] p={face.probability:.3f}: {face.name.upper() if not face.known else face.name}   ({ranked})")
    if result.n_faces_not_shown:
        lines.append(f"  {result.n_faces_not_shown} more face(s) not identified (demo.max_faces or crop failed)")
    return "\n".join(lines)


def _identify(args: argparse.Namespace) -> int:
    params = load_params(args.params)
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
            print(f"faceid identify: {exc}", file=sys.stderr)
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
    from faceid.demo.server import create_app  # Flask only when serving

    params = load_params(args.params)
    app = create_app(_paths(args), params, threshold=args.threshold)
    host, port = args.host or params.demo.host, args.port if args.port is not None else params.demo.port
    print(f"faceid demo on http://{host}:{port}/ (Ctrl-C stops it)")
    app.run(host=host, port=port, threaded=True)
    return EXIT_OK


def _profile(args: argparse.Namespace) -> int:
    path = apply_profile(args.name, args.params, args.profiles_dir)
    print(f"{args.params}: merged with the overrides of {path} and validated (`git diff {args.params}` shows them)")
    return EXIT_OK


def _check_params(args: argparse.Namespace) -> int:
    params = load_params(args.params)
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


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="faceid", description="faceid demo: enrol people, identify faces in photos; params tools.")
    common = argparse.ArgumentParser(add_help=False)
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
    identify.add_argument("--threshold", type=float, help="cosine similarity above which a face is named (default: the evaluation's at demo.fmr)")
    identify.add_argument("--top-k", type=int, help="candidates per face (default: demo.top_k)")
    identify.add_argument("--json", action="store_true", help="machine-readable output on stdout")
    identify.set_defaults(run=_identify)

    serve = sub.add_parser("serve", parents=[common], help="a local web page to upload photos")
    serve.add_argument("--host", help="default: demo.host")
    serve.add_argument("--port", type=int, help="default: demo.port")
    serve.add_argument("--threshold", type=float, help="for every model, instead of the evaluations'")
    serve.set_defaults(run=_serve)
    _add_params_commands(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    if getattr(args, "top_k", None) is not None and args.top_k < 1:
        print("faceid: error: --top-k: expected an integer >= 1", file=sys.stderr)
        return EXIT_SETUP
    try:
        return args.run(args)
    except FaceidError as exc:  # the project's own errors: one line, no traceback
        print(f"faceid {args.command}: {format_error(exc)}", file=sys.stderr)
        return EXIT_SETUP


if __name__ == "__main__":
    sys.exit(main())
