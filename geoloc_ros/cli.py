"""The ``geoloc`` command: a thin door into the pipeline and the offline tools.

    geoloc demo        simulate a town, build the map, replay, write a report
    geoloc simulate    write bags (m3dgr + oxford_spires layouts) with ground truth
    geoloc info        list a bag's topics and types
    geoloc build-map   build a map directory from a bag and a trajectory
    geoloc replay      run the pipeline on a bag as fast as possible, write the estimate
    geoloc play        publish a bag on ROS 2 topics with /clock
    geoloc eval        compare an estimate with ground truth
    geoloc train       train the REIN weights on simulated runs
    geoloc bench       run benchmarks (bev, objects, fusion, io, faults, odometry, all)
"""
from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

__all__ = ["main"]


class CliError(RuntimeError):
    """An error to print as one line, without a traceback."""


def _cmd_simulate(a) -> int:
    from geoloc_ros.sim.scenario import simulate
    kw = {}
    if a.runs:
        kw["runs"] = a.runs.split(",")
    if a.workers:
        kw["workers"] = a.workers
    out = simulate(a.scenario, seed=a.seed, out_dir=Path(a.out), progress=not a.quiet,
                   duration_s=a.duration, **kw)
    print(f"wrote {out}")
    return 0


def _cmd_info(a) -> int:
    from geoloc_ros.io.bags import list_topics
    for info in list_topics(a.bag):
        print(f"{info.topic:55s} {info.msgtype:40s} {info.count:7d}")
    return 0


def _cmd_build_map(a) -> int:
    from geoloc_ros.config import load_config
    from geoloc_ros.maps.build import build_map
    cfg = load_config(a.config)
    out = build_map(a.bag, a.profile, a.trajectory, a.out, cfg=cfg, progress=not a.quiet)
    print(f"map written to {out}")
    return 0


def _cmd_replay(a) -> int:
    from geoloc_ros.config import load_config
    from geoloc_ros.replay import replay
    cfg = load_config(a.config)
    res = replay(a.bag, a.profile, a.map, cfg=cfg, out_tum=a.out, gt_tum=a.gt,
                 report_dir=a.report, progress=not a.quiet)
    print(res.summary())
    return 0


def _cmd_eval(a) -> int:
    from geoloc_ros.eval.cli_eval import run_eval
    return int(run_eval(a.estimate, a.groundtruth, report_dir=a.report, align=a.align) or 0)


def _cmd_bench(a) -> int:
    from geoloc_ros.benchmarks import run_benchmarks
    return run_benchmarks(a.area, Path(a.out), quick=a.quick)


def _cmd_demo(a) -> int:
    from geoloc_ros.demo import run_demo
    return run_demo(Path(a.out), seed=a.seed, scenario=a.scenario)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="geoloc", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = p.add_subparsers(dest="cmd", required=True)

    s = sub.add_parser("demo", help="simulate, build a map, replay both layouts, write a report")
    s.add_argument("--out", default="demo_out")
    s.add_argument("--seed", type=int, default=1)
    s.add_argument("--scenario", default="demo")
    s.set_defaults(func=_cmd_demo)

    s = sub.add_parser("simulate", help="write simulated bags with ground truth")
    s.add_argument("--scenario", default="town")
    s.add_argument("--seed", type=int, default=0)
    s.add_argument("--out", required=True)
    s.add_argument("--duration", type=float, default=None, help="cap every run at this many seconds")
    s.add_argument("--runs", default="", help="comma-separated subset of mapping,loc_same,loc_reverse,loc_lateral")
    s.add_argument("--workers", type=int, default=0, help="processes simulating runs side by side (0: auto)")
    s.add_argument("--quiet", action="store_true")
    s.set_defaults(func=_cmd_simulate)

    s = sub.add_parser("info", help="list a bag's topics")
    s.add_argument("bag")
    s.set_defaults(func=_cmd_info)

    s = sub.add_parser("build-map", help="build a map directory from a bag and a trajectory")
    s.add_argument("bag")
    s.add_argument("--profile", required=True, help="bundled profile name or YAML path")
    s.add_argument("--trajectory", required=True, help="TUM trajectory of base_link in the map frame")
    s.add_argument("--out", required=True)
    s.add_argument("--config", default=None, help="params YAML (default: built-in defaults)")
    s.add_argument("--quiet", action="store_true")
    s.set_defaults(func=_cmd_build_map)

    s = sub.add_parser("replay", help="run the pipeline on a bag, write the estimate (TUM)")
    s.add_argument("bag")
    s.add_argument("--profile", required=True)
    s.add_argument("--map", default=None)
    s.add_argument("--out", required=True, help="estimate TUM file")
    s.add_argument("--gt", default=None, help="ground truth TUM, for the summary and report")
    s.add_argument("--report", default=None, help="write a report into this directory")
    s.add_argument("--config", default=None)
    s.add_argument("--quiet", action="store_true")
    s.set_defaults(func=_cmd_replay)

    s = sub.add_parser("play", help="publish a bag on ROS 2 topics with /clock "
                       "(BAG --profile P [--rate R] [--loop] ...; `geoloc play -h` for all)", add_help=False)
    s.add_argument("args", nargs=argparse.REMAINDER)  # handled by geoloc_ros.play (see _PASSTHROUGH)

    s = sub.add_parser("eval", help="compare an estimate with ground truth")
    s.add_argument("estimate")
    s.add_argument("groundtruth")
    s.add_argument("--report", default=None)
    s.add_argument("--align", default="none", choices=["none", "se3", "sim3"])
    s.set_defaults(func=_cmd_eval)

    s = sub.add_parser("train", help="train the REIN weights on simulated runs (`geoloc train -h`)")
    s.add_argument("args", nargs=argparse.REMAINDER)  # handled by geoloc_ros.bev.train (see _PASSTHROUGH)

    s = sub.add_parser("bench", help="run benchmarks, print tables, write bench_out/<area>.json")
    s.add_argument("area", nargs="?", default="all",
                   choices=["all", "io", "bev", "objects", "fusion", "nodes", "faults", "odometry"])
    s.add_argument("--out", default="bench_out")
    s.add_argument("--quick", action="store_true", help="smaller runs")
    s.set_defaults(func=_cmd_bench)
    return p


_PASSTHROUGH = {"play": ("geoloc_ros.play", "main"), "train": ("geoloc_ros.bev.train", "main")}


def main(argv=None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] in _PASSTHROUGH:  # subcommands with their own argument parser
        mod, fn = _PASSTHROUGH[argv[0]]
        return int(getattr(__import__(mod, fromlist=[fn]), fn)(argv[1:]) or 0)
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO,
                        format="%(levelname)s %(name)s: %(message)s")
    from geoloc_ros.config import ConfigError
    from geoloc_ros.maps.mapdir import MapError
    known = [CliError, ConfigError, MapError, FileNotFoundError]
    for mod, name in (("geoloc_ros.io.bags", "BagError"), ("geoloc_ros.io.profiles", "ProfileError")):
        try:
            known.append(getattr(__import__(mod, fromlist=[name]), name))
        except (ImportError, AttributeError):
            pass
    try:
        return int(args.func(args) or 0)
    except tuple(known) as e:
        print(f"geoloc {args.cmd}: error: {e}", file=sys.stderr)
        return 2
    except BrokenPipeError:  # `geoloc ... | head`
        sys.stderr.close()
        return 0
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
