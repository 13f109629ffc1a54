"""``invrim train FILE -o RUN``: fit a RIM on a data file."""
from __future__ import annotations

import argparse

from .. import distributed as dd
from ..config import PRECISIONS, SCHEDULES, FitConfig, RIMConfig, default
from ..plugins import registry
from ..training.from_file import train_on_file
from .arguments import fraction, non_negative_float, non_negative_int, positive_float, positive_int
from .options import check_options, parse_options

EPILOG = """examples:
  invrim train train.h5 -o run/ --epochs 20
  invrim train train.h5 -o run/ --backbone unet -b nf=16 --T 8 --validation val.h5 --max-time 0.5
  invrim train train.h5 -o run/ --epochs 40 --resume        # continue a stopped run up to epoch 40

The forward model and likelihood are rebuilt from the file; the run folder (model.json, weights as
safetensors, metrics.jsonl, data.json) is all 'invrim reconstruct' needs later. The defaults are
invrim.config's RIMConfig and FitConfig, the same as RIM(...) and rim.fit(...) use from Python.
As an application, this command keeps glibc's heap between training steps (invrim.heap.keep_heap;
INVRIM_KEEP_HEAP=0 turns it off)."""


def add_parser(sub) -> None:
    p = sub.add_parser(
        "train", help="train a RIM on a dataset file",
        description="Train a Recurrent Inference Machine on an invrim data file; checkpoints go to the run folder.",
        epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("file", metavar="FILE", help="training data (made by 'invrim simulate' or invrim.data)")
    p.add_argument("-o", "--output", metavar="RUN", required=True, help="run folder for checkpoints and logs")
    p.add_argument("--backbone", default="hourglass", metavar="NAME", help="registered backbone (default hourglass)")
    p.add_argument("-b", "--backbone-option", action="append", metavar="KEY=VALUE", default=[],
                   help="backbone option, e.g. nf=16 (repeatable)")
    rim, fit = RIMConfig(), FitConfig()
    p.add_argument("--T", type=positive_int, default=None, help=f"number of RIM steps (default {rim.T})")
    p.add_argument("-r", "--rim-option", action="append", metavar="KEY=VALUE", default=[],
                   help="RIM setting, e.g. score_preprocessing_method=adam (repeatable; see RIMConfig)")
    p.add_argument("--epochs", type=positive_int, default=fit.epochs, help=f"total epochs (default {fit.epochs})")
    p.add_argument("--batch-size", type=positive_int, default=fit.batch_size, help=f"default {fit.batch_size}")
    p.add_argument("--learning-rate", type=positive_float, default=fit.learning_rate, help=f"default {fit.learning_rate:g}")
    val = p.add_mutually_exclusive_group()
    val.add_argument("--validation", metavar="FILE", help="validation data file")
    val.add_argument("--validation-split", type=fraction, default=fit.validation_split, metavar="FRACTION",
                     help="hold out this fraction of FILE for validation")
    p.add_argument("--max-time", type=positive_float, default=fit.max_time, metavar="HOURS", help="time limit in hours")
    p.add_argument("--patience", type=positive_float, default=fit.patience, help="early-stopping patience in epochs")
    p.add_argument("--scheduler", default=fit.scheduler, choices=SCHEDULES,
                   help=f"learning-rate schedule after warm-up (default {fit.scheduler})")
    p.add_argument("--warmup", type=non_negative_int, default=fit.warmup, help=f"warm-up steps (default {fit.warmup})")
    p.add_argument("--clip", type=non_negative_float, default=fit.clip, help=f"gradient-norm clipping, 0 = off (default {fit.clip:g})")
    p.add_argument("--save-every", type=positive_int, default=fit.save_every, metavar="EPOCHS",
                   help=f"save a checkpoint every this many epochs, and at the end (default {fit.save_every})")
    p.add_argument("--seed", type=int, default=None, help="seed of the weights and the shuffling")
    p.add_argument("--num-workers", type=non_negative_int, default=default(FitConfig, "num_workers"),
                   help="DataLoader worker processes (default 0)")
    p.add_argument("--device", default=None, help="cpu, cuda, cuda:1 ... (default: cpu)")
    p.add_argument("--resume", action="store_true",
                   help="continue the run found in RUN (a new run starts when RUN holds none, so a rerun "
                        "of the same job script is safe)")
    p.add_argument("--no-check-values", action="store_true",
                   help="skip the NaN/Inf scan of the data file (one read pass)")
    p.add_argument("--precision", choices=PRECISIONS, default=None,
                   help="precision of the backbone (autocast; physics, score, loss and weights stay fp32): "
                        "bf16 needs bf16 hardware (avx512_bf16 / amx_bf16 on CPUs; see docs/speed.md); "
                        "saved with the model (default fp32)")
    p.add_argument("--compile", action="store_true",
                   help="run the backbone through torch.compile (compiled at the first step, eager where that "
                        "fails); saved with the model, so reconstructions compile too (--no-compile there). "
                        "Measured on CPU: no faster for training, faster bf16 inference (docs/speed.md)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    backbone_opts = parse_options(args.backbone_option, "--backbone-option")
    check_options(registry().backbones, args.backbone, backbone_opts, "--backbone-option")
    rim_opts = parse_options(args.rim_option, "--rim-option")
    if args.T is not None:
        rim_opts["T"] = args.T
    if args.precision is not None:
        rim_opts["precision"] = args.precision
    if args.compile:
        rim_opts["compile"] = True
    rim, history = train_on_file(
        args.file, args.output, backbone=args.backbone, backbone_config=backbone_opts, rim_options=rim_opts,
        epochs=args.epochs, learning_rate=args.learning_rate, batch_size=args.batch_size,
        validation_file=args.validation, validation_split=args.validation_split, resume=args.resume,
        device=args.device, progress=not args.quiet, check_values=not args.no_check_values,
        max_time=args.max_time, patience=args.patience, scheduler=args.scheduler, warmup=args.warmup, clip=args.clip,
        save_every=args.save_every, seed=args.seed, num_workers=args.num_workers)
    if not dd.is_main():
        return 0
    if history.records:
        last = history.records[-1]
        val = f", validation loss {last['val_loss']:.4g}" if last.get("val_loss") is not None else ""
        print(f"trained to epoch {last['epoch']}: training loss {last['train_loss']:.4g}{val}"
              f"{'; stopped: ' + history.stop_reason if history.stop_reason not in ('', 'completed') else ''}")
    else:
        print(f"nothing to do: the run in {args.output} already reached epoch {args.epochs}")
    s = rim.settings
    start = (f"{s.initialization_iterations} CG iterations of Tikhonov least squares (damping "
             f"{s.initialization_damping:.3g}, chosen on the first training samples)"
             if rim.start_method == "tikhonov" else {"approximate_inverse": "the forward model's pseudo-inverse",
                                                     "zeros": "zeros", "model": "a learned start"}[rim.start_method])
    print(f"the RIM starts from {start}")
    print(f"model saved in {args.output} (best epoch {history.best_epoch}); reconstruct with "
          f"'invrim reconstruct {args.output} OBS.h5 -o OUT.h5'")
    return 0
