"""Read ROS 1 ``.bag`` and ROS 2 (``.db3``/``.mcap`` file or bag directory) recordings with rosbags.

* :func:`list_topics` / :func:`bag_info` -- what a bag holds (for ``geoloc info BAG``);
* :func:`read_messages` -- raw deserialized messages of some topics, in record-time order;
* :func:`read_events` -- :mod:`geoloc_ros.events` with a :class:`~geoloc_ros.io.profiles.Profile`
  applied (extrinsics, units, quirks), ordered by stamp (see :mod:`geoloc_ros.io.assemble`).

The bundled non-standard types (livox CustomMsg, gnss_comm PVT) are available even when a bag
carries no message definitions. A missing, truncated or corrupt bag, a topic the bag lacks
and an unknown message type each raise :class:`BagError` naming the file or topic.
"""
from __future__ import annotations

import logging
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Iterator

from geoloc_ros.io.assemble import AssemblerStats, EventAssembler
from geoloc_ros.io.profiles import Profile, load_profile, normalize_msgtype
from geoloc_ros.io.livox_raw import livox_from_raw
from geoloc_ros.msgs import DecodeError, make_typestore

__all__ = ["BagError", "BagInfo", "TopicInfo", "open_bag", "bag_info", "list_topics",
           "read_messages", "read_events"]

log = logging.getLogger(__name__)


class BagError(RuntimeError):
    """A bag that cannot be read as asked; the message names the file or topic."""


@dataclass
class TopicInfo:
    msgtype: str
    count: int
    topic: str = ""


@dataclass
class BagInfo:
    """Summary of a bag: format, time span (unix s) and topics."""
    path: Path
    ros_version: int
    start_s: float
    end_s: float
    message_count: int
    topics: dict[str, TopicInfo] = field(default_factory=dict)

    @property
    def duration_s(self) -> float:
        return max(self.end_s - self.start_s, 0.0)

    def table(self) -> str:
        rows = [f"{self.path}  ROS {self.ros_version}  {self.duration_s:.1f} s  {self.message_count} messages"]
        w = max([len(t) for t in self.topics] + [5])
        for t, i in sorted(self.topics.items()):
            rate = i.count / self.duration_s if self.duration_s > 0 else 0.0
            rows.append(f"  {t:<{w}}  {i.msgtype:<40} {i.count:>8}  {rate:7.1f} Hz")
        return "\n".join(rows)


def _check_path(path: Path) -> Path:
    p = Path(path).expanduser()
    if not p.exists():
        raise BagError(f"bag not found: {p}")
    if p.is_dir():
        if not (p / "metadata.yaml").is_file():
            raise BagError(f"{p}: a directory without metadata.yaml is not a ROS 2 bag")
    elif p.suffix not in (".bag", ".db3", ".mcap"):
        raise BagError(f"{p}: unknown bag format '{p.suffix}' (expected .bag, .db3, .mcap or a ROS 2 bag directory)")
    elif p.stat().st_size == 0:
        raise BagError(f"{p}: empty file")
    return p


def _reason(e: BaseException) -> str:
    s = " ".join(str(a) for a in e.args) if e.args else type(e).__name__
    return s.strip() or type(e).__name__


@contextmanager
def open_bag(path: str | Path):
    """An open rosbags ``AnyReader`` with the bundled custom types; errors become :class:`BagError`."""
    from rosbags.highlevel import AnyReader
    p = _check_path(Path(path))
    is1 = p.suffix == ".bag"
    ours = make_typestore(1 if is1 else 2)
    try:
        reader = AnyReader([p], default_typestore=ours)
        reader.open()
    except BagError:
        raise
    except Exception as e:  # noqa: BLE001 - rosbags raises many types; all mean "cannot read"
        hint = " (truncated or not indexed? try `rosbag reindex`)" if is1 else ""
        raise BagError(f"{p}: cannot open bag: {_reason(e)}{hint}") from None
    try:
        # types the bag defines nowhere (ROS 2 bags without definitions) come from the bundled store
        missing = {c.msgtype for c in reader.connections} - set(reader.typestore.fielddefs)
        known = {t: ours.fielddefs[t] for t in missing if t in ours.fielddefs}
        if known:
            reader.typestore.register(known)
        yield reader
    finally:
        try:
            reader.close()
        except Exception:  # noqa: BLE001
            pass


def bag_info(path: str | Path) -> BagInfo:
    """Format, time span and per-topic message types and counts."""
    with open_bag(path) as r:
        topics: dict[str, TopicInfo] = {}
        for c in r.connections:
            ti = topics.setdefault(c.topic, TopicInfo(c.msgtype, 0, c.topic))
            ti.count += int(c.msgcount)
        return BagInfo(path=Path(path), ros_version=1 if Path(path).suffix == ".bag" else 2,
                       start_s=r.start_time * 1e-9, end_s=r.end_time * 1e-9,
                       message_count=int(r.message_count), topics=topics)


def list_topics(path: str | Path) -> list[TopicInfo]:
    """:class:`TopicInfo` (``topic``, ``msgtype``, ``count``) per topic, sorted by name
    (``bag_info(path).topics`` is the same as a dict keyed by topic)."""
    return [ti for _, ti in sorted(bag_info(path).topics.items())]


def _select(reader, path, topics: Iterable[str] | None):
    have = {c.topic for c in reader.connections}
    if topics is None:
        return list(reader.connections)
    want = list(topics)
    missing = [t for t in want if t not in have]
    if missing:
        raise BagError(f"{path}: topic(s) {', '.join(missing)} not in the bag; it has: "
                       f"{', '.join(sorted(have)) or '(no topics)'}")
    return [c for c in reader.connections if c.topic in want]


def _ns(t_s: float | None) -> int | None:
    return None if t_s is None else int(t_s * 1e9)


def _iter_raw(reader, path, conns, start_s, end_s):
    it = reader.messages(connections=conns, start=_ns(start_s), stop=_ns(end_s))
    while True:
        try:
            item = next(it)
        except StopIteration:
            return
        except Exception as e:  # noqa: BLE001 - corrupt chunk / truncated file mid-way
            raise BagError(f"{path}: corrupt or truncated data: {_reason(e)}") from None
        yield item


def _deserialize(reader, path, conn, raw):
    if conn.msgtype not in reader.typestore.fielddefs:
        raise BagError(f"{path}: topic {conn.topic} has message type {conn.msgtype}, which is unknown "
                       f"(not defined in the bag nor bundled with geoloc_ros)")
    try:
        return reader.deserialize(raw, conn.msgtype)
    except Exception as e:  # noqa: BLE001
        raise BagError(f"{path}: cannot deserialize a {conn.msgtype} message on {conn.topic}: {_reason(e)}") from None


def read_messages(path: str | Path, topics: Iterable[str] | None = None, start_s: float | None = None,
                  end_s: float | None = None) -> Iterator[tuple[str, str, float, object]]:
    """``(topic, msgtype, record_time_s, message)`` in record-time order (all topics when None)."""
    with open_bag(path) as r:
        conns = _select(r, path, topics)
        for c in conns:
            if c.msgtype not in r.typestore.fielddefs:
                raise BagError(f"{path}: topic {c.topic} has message type {c.msgtype}, which is unknown "
                               f"(not defined in the bag nor bundled with geoloc_ros)")
        for conn, t_ns, raw in _iter_raw(r, path, conns, start_s, end_s):
            yield conn.topic, conn.msgtype, t_ns * 1e-9, _deserialize(r, path, conn, raw)


def read_events(bag_path: str | Path, profile: str | Path | Profile, roles: Iterable[str] | None = None,
                start_s: float | None = None, end_s: float | None = None,
                stats: AssemblerStats | None = None, reorder_window_s: float = 0.5,
                strict: bool = False) -> Iterator:
    """Events of ``geoloc_ros.events`` types from a bag, with ``profile`` applied, ordered by stamp.

    ``roles``: profile roles to emit (default: the profile's primary roles, e.g. ``lidar`` but not
    ``lidar_avia``). Side roles they need (GNSS PVT, camera_info, depth) are read too. A role
    whose topic the bag lacks is skipped with a warning, or a :class:`BagError` listing the bag's
    topics when ``strict`` or when it was asked for explicitly. ``start_s``/``end_s`` bound event
    stamps (unix s). ``stats`` (an :class:`AssemblerStats`) receives counts and skip reasons.
    """
    prof = load_profile(profile)
    explicit = roles is not None
    roles = list(roles) if roles is not None else prof.primary_roles()
    unknown = [r for r in roles if r not in prof.roles]
    if unknown:
        raise BagError(f"profile '{prof.name}' has no role(s) {', '.join(unknown)}; it has {', '.join(prof.roles)}")
    p = Path(bag_path)
    with open_bag(p) as r:
        by_topic = {c.topic: c for c in r.connections}
        asm = EventAssembler(prof, [x for x in roles if prof.roles[x].topic in by_topic], reorder_window_s)
        if stats is not None:
            asm.stats = stats
        missing = [x for x in roles if prof.roles[x].topic not in by_topic]
        if missing:
            msg = (f"{p}: topic(s) {', '.join(prof.roles[x].topic + ' (' + x + ')' for x in missing)} "
                   f"of profile '{prof.name}' not in the bag; it has: {', '.join(sorted(by_topic)) or '(no topics)'}")
            if strict or explicit or len(missing) == len(roles):
                raise BagError(msg)
            optional = {"camera_info", "camera_instance", "camera_depth", "initialpose"}
            (log.info if all(prof.roles[x].kind in optional for x in missing) else log.warning)(msg)
        topic_role = {}
        for role in asm.needed_roles():
            spec = prof.roles[role]
            c = by_topic.get(spec.topic)
            if c is None:
                continue
            if normalize_msgtype(c.msgtype) != spec.msgtype:
                raise BagError(f"{p}: topic {spec.topic} is {c.msgtype} in the bag, but profile "
                               f"'{prof.name}' role '{role}' expects {spec.msgtype}")
            topic_role[spec.topic] = role
        conns = [c for c in r.connections if c.topic in topic_role]
        # bag record time ~ event stamp; widen the record-time window by the stamp offsets
        slack = reorder_window_s + max([abs(s.stamp_offset_s) for s in prof.roles.values()] + [0.0]) + 1.0
        rs = None if start_s is None else start_s - slack
        re_ = None if end_s is None else end_s + slack

        def in_range(ev) -> bool:
            return (start_s is None or ev.t >= start_s) and (end_s is None or ev.t < end_s)

        ros_version = 1 if p.suffix == ".bag" else 2
        for conn, _t, raw in _iter_raw(r, p, conns, rs, re_):
            role = topic_role[conn.topic]
            try:
                if conn.msgtype.endswith("/CustomMsg") and (ros_version == 1 or bytes(raw[:2]) == b"\x00\x01"):
                    msg = livox_from_raw(raw, ros_version)  # numpy fast path (little-endian), same result
                else:
                    msg = _deserialize(r, p, conn, raw)
            except (BagError, DecodeError) as e:  # one corrupt message: skip it, say why
                asm.stats.skip(role, str(e))
                continue
            for ev in asm.push(role, msg):
                if in_range(ev):
                    yield ev
        for ev in asm.flush():
            if in_range(ev):
                yield ev
        if asm.stats.skipped:
            log.warning("%s: skipped messages %s (first reasons: %s)", p, dict(asm.stats.skipped), asm.stats.reasons)
