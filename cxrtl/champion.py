"""The champion in the store: versions that never change, and one pointer that names the current one.

A promotion writes the model's files, its card and the decision under ``champion/versions/RUN_ID/SOURCE/``
(:mod:`cxrtl.store.keys`), then replaces the pointer ``champion/current.json`` by a compare-and-swap
(:meth:`cxrtl.store.Store.put_bytes_if`) from the version it compared against. Of two promotions that compared
against the same champion, one moves the pointer and the other is told it lost. Readers read the pointer, then
the files of the version it names, which no one changes: they never see a mix of two champions. A crash
before the swap leaves an unused version (written again, the same, by the retry); after it, the champion.

The pointer records every file's sha256, so :func:`inspect` finds a version damaged since (a file missing or
changed) and :func:`reset` moves the pointer back. Stores written before versions existed (``champion/model.pt``
and the rest directly) are read as they are while no pointer exists; the next promotion moves their files into
a version first (:func:`current_for_update`).
"""

from __future__ import annotations

import contextlib
import json
import logging
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

from cxrtl.errors import CxrtlError
from cxrtl.records import ChampionCard, Record
from cxrtl.seen import SEEN_FILE
from cxrtl.store import Store, keys
from cxrtl.store.base import json_bytes
from cxrtl.train import METADATA_FILE, MODEL_FILE

logger = logging.getLogger(__name__)

CARD_FILE = "card.json"
CARD_MARKDOWN_FILE = "card.md"
DECISION_FILE = "decision.json"
# What a promotion copies from the model's folder; seen.json only where the model has one.
MODEL_FILES = (MODEL_FILE, METADATA_FILE, SEEN_FILE)
# Without these there is no champion to compare with.
REQUIRED_FILES = (MODEL_FILE, METADATA_FILE, CARD_FILE)
_LEGACY_FILES = (*MODEL_FILES, CARD_MARKDOWN_FILE, CARD_FILE)


class ChampionDamaged(CxrtlError):
    """The champion's files are not those its pointer names."""


@dataclass(frozen=True)
class Pointer(Record):
    """``champion/current.json``: which version is the champion, and the sha256 of each of its files."""

    KIND: ClassVar[str] = "champion pointer"

    run_id: str
    source: str
    files: dict[str, str]  # name: sha256
    # The version this one replaced (run_id, source), what `cxrtl champion reset` goes back to; None: none or unknown.
    previous: dict[str, str] | None = None


@dataclass(frozen=True)
class Champion:
    """The champion as read: its pointer, and the pointer's tag for the next compare-and-swap."""

    pointer: Pointer
    tag: str | None  # None where no pointer names it (yet)
    legacy: bool = False  # the old layout: files directly under champion/

    def key(self, name: str) -> str:
        if self.legacy:
            return keys.champion_key(name)
        return keys.champion_version_key(self.pointer.run_id, self.pointer.source, name)

    def names(self, run_id: str, source: str) -> bool:
        return not self.legacy and (self.pointer.run_id, self.pointer.source) == (run_id, source)

    def describe(self) -> str:
        return f"{self.pointer.source} from run {self.pointer.run_id}"


def current(store: Store) -> Champion | None:
    """The champion, or None. Reads only."""
    tagged = store.read_tagged(keys.champion_pointer_key())
    if tagged is not None:
        where = f"{store.url}: {keys.champion_pointer_key()}"
        try:
            data = json.loads(tagged.data)
        except ValueError as exc:
            raise ChampionDamaged(f"{where} is not JSON ({exc})") from None
        return Champion(Pointer.from_dict(data, where), tagged.tag)
    return _legacy(store)


def _legacy(store: Store) -> Champion | None:
    """The champion of the old layout, whose card was written last: without it there is none."""
    if not store.exists(keys.champion_key(CARD_FILE)):
        return None
    card = read_card(store, Champion(Pointer("", "", {}), None, legacy=True))
    files = {n: store.sha256(keys.champion_key(n)) for n in _LEGACY_FILES if store.exists(keys.champion_key(n))}
    return Champion(Pointer(card.run_id, card.source, files), None, legacy=True)


def read_card(store: Store, champion: Champion) -> ChampionCard:
    key = champion.key(CARD_FILE)
    return ChampionCard.from_dict(store.get_json(key), f"{store.url}: {key}")


def current_for_update(store: Store) -> Champion | None:
    """The champion, moved into a version first if it is of the old layout (a write: for promotion only)."""
    champion = current(store)
    if champion is None or not champion.legacy:
        return champion
    run_id, source = champion.pointer.run_id, champion.pointer.source
    logger.info("moving the champion (%s) into %s", champion.describe(), keys.champion_version_prefix(run_id, source))
    files = {
        name: _copy_once(store, keys.champion_key(name), keys.champion_version_key(run_id, source, name))
        for name in champion.pointer.files
    }
    store.put_bytes_if(keys.champion_pointer_key(), json_bytes(Pointer(run_id, source, files).to_dict()), None)
    moved = current(store)  # this one, or one another writer moved or promoted first
    if moved is not None and not moved.legacy:
        for name in _LEGACY_FILES:
            store.delete(keys.champion_key(name))
    return moved


def install(
    store: Store,
    run_id: str,
    source: str,
    files: dict[str, str],
    card: ChampionCard,
    card_markdown: str,
    decision: dict[str, Any],
    expected: Champion | None,
) -> Champion | None:
    """Write the version of ``run_id``'s ``source`` model (``files``: name to the key it is copied from), then
    move the pointer to it from ``expected``, the champion it was compared with. Returns the champion afterwards:
    this version, or the one another promotion installed first.

    Idempotent: a file already in the version, the same, is kept; the card and decision of an earlier attempt
    are kept, so a retry ends in the same state as one attempt.
    """
    if expected is not None and expected.legacy:
        raise CxrtlError("install needs the champion as current_for_update() returns it, not of the old layout")
    version = {
        name: _copy_once(store, key, keys.champion_version_key(run_id, source, name)) for name, key in files.items()
    }
    for name, content in (
        (CARD_FILE, json_bytes(card.to_dict())),
        (CARD_MARKDOWN_FILE, card_markdown.encode()),
        (DECISION_FILE, json_bytes(decision)),
    ):
        key = keys.champion_version_key(run_id, source, name)
        version[name] = store.sha256(key) if store.exists(key) else store.put_bytes(key, content)
    previous = {"run_id": expected.pointer.run_id, "source": expected.pointer.source} if expected else None
    pointer = json_bytes(Pointer(run_id, source, version, previous).to_dict())
    if store.put_bytes_if(keys.champion_pointer_key(), pointer, expected.tag if expected else None):
        logger.info("the champion is now %s from run %s", source, run_id)
    after = current(store)
    if after is not None and after.names(run_id, source):
        _record_history(store, run_id, source)
    return after


def _record_history(store: Store, run_id: str, source: str) -> None:
    """The card of ``run_id``'s promotion into the history, once its version has been the champion."""
    card = keys.champion_version_key(run_id, source, CARD_FILE)
    store.put_bytes(keys.champion_history_key(run_id), json_bytes(store.get_json(card)))


def _copy_once(store: Store, source_key: str, key: str) -> str:
    """Copy ``source_key`` to ``key`` unless ``key`` holds it already; a version's file never changes."""
    sha256 = store.sha256(source_key)
    if store.exists(key):
        if store.sha256(key) != sha256:
            raise CxrtlError(
                f"{store.url}: {key} holds another file than {source_key}; a champion version never changes"
            )
        return sha256
    return store.copy(source_key, key)


def recorded_decision(store: Store, run_id: str, source: str) -> dict[str, Any] | None:
    """The decision already made for ``run_id``'s model ``source``, for a retried promotion to return as it is.

    Found in ``champion/decisions/RUN_ID.json``; or, after a crash between the pointer's swap and that record,
    in the version's ``decision.json`` when the pointer names the version, or names one whose decision replaced it.
    """
    key = keys.champion_decision_key(run_id)
    if store.exists(key):
        return store.get_json(key)
    champion = current(store)
    if champion is None or champion.legacy:
        return None
    installed = champion.names(run_id, source) or _replaced(store, champion, run_id, source)
    if not installed:
        return None
    # Finish what the crashed promotion left: the history, then the decision's record.
    _record_history(store, run_id, source)
    decision = store.get_json(keys.champion_version_key(run_id, source, DECISION_FILE))
    record_decision(store, run_id, decision)
    return decision


def _replaced(store: Store, champion: Champion, run_id: str, source: str) -> bool:
    """Whether ``champion`` was promoted over ``run_id``'s ``source`` model (its decision names it as champion)."""
    key = champion.key(DECISION_FILE)
    if not store.exists(key):
        return False
    before = store.get_json(key).get("champion") or {}
    return (before.get("run_id"), before.get("source")) == (run_id, source)


def record_decision(store: Store, run_id: str, decision: dict[str, Any]) -> None:
    store.put_json(keys.champion_decision_key(run_id), decision)


# --- verify and reset ------------------------------------------------------------------------------------


def inspect(store: Store) -> tuple[Champion | None, list[str]]:
    """The champion and what is wrong with it (nothing: an empty list). Reads every file in full."""
    try:
        champion = current(store)
    except CxrtlError as exc:
        return None, [str(exc)]
    return champion, [] if champion is None else _problems(store, champion)


def _problems(store: Store, champion: Champion) -> list[str]:
    """Files of ``champion`` missing, failing their recorded sha256 or not the sha256 the pointer names; a card
    that cannot be read."""
    files = champion.pointer.files
    problems = [f"{champion.key(name)} is missing" for name in REQUIRED_FILES if name not in files]
    with tempfile.TemporaryDirectory(prefix="cxrtl-verify-") as tmp:
        for name, sha256 in sorted(files.items()):
            key = champion.key(name)
            if not store.exists(key):
                problems.append(f"{key} is missing")
                continue
            try:
                digest = store.get_file(key, Path(tmp) / name)
            except CxrtlError as exc:
                problems.append(str(exc).removeprefix(f"{store.url}: "))
                continue
            if digest != sha256:
                problems.append(f"{key} has sha256 {digest[:12]}, its pointer says {sha256[:12]}")
    if not problems:
        try:
            read_card(store, champion)
        except CxrtlError as exc:
            problems.append(str(exc).removeprefix(f"{store.url}: "))
    return problems


def verify_command(store: Store) -> str:
    return f"cxrtl champion verify --store {store.url}"


def reset_command(store: Store) -> str:
    return f"cxrtl champion reset --store {store.url}"


def check(store: Store) -> None:
    """Refuse, in one line with the command that resets it, a champion whose files are damaged, and a store whose
    server ignores conditional writes: before a run trains, not at its promotion."""
    store.check_conditional_writes()  # a promotion at the end of the run needs them
    champion, problems = inspect(store)
    if problems:
        more = f" (and {len(problems) - 1} more problem(s))" if len(problems) > 1 else ""
        raise ChampionDamaged(
            f"the champion in {store.url} is damaged: {problems[0]}{more}; `{reset_command(store)}` goes back to "
            f"the champion before it (or to none), `{verify_command(store)}` lists every problem"
        )
    if champion is not None:
        logger.info("champion %s verified (%d files)", champion.describe(), len(champion.pointer.files))


def reset(store: Store, to_none: bool = False) -> str:
    """Move the pointer back to the champion before the current one if that one is intact, else (or with
    ``to_none``) remove it, so that the next run's best becomes the first champion. Returns what was done."""
    champion, problems = inspect(store)
    if champion is None and not problems:
        return f"there is no champion in {store.url}; nothing to reset"
    previous = None if to_none or champion is None else _previous(store, champion)
    if previous is not None and (previous_problems := _problems(store, previous)):
        logger.warning("the champion before (%s) is damaged too: %s", previous.describe(), previous_problems[0])
        previous = None
    if previous is None:
        store.delete(keys.champion_pointer_key())
        for name in _LEGACY_FILES:
            store.delete(keys.champion_key(name))
        return f"no champion in {store.url} now: the next run's best model becomes the first"
    assert champion is not None
    if not store.put_bytes_if(keys.champion_pointer_key(), json_bytes(previous.pointer.to_dict()), champion.tag):
        raise CxrtlError(
            f"the champion in {store.url} changed while it was being reset; run `{reset_command(store)}` again"
        )
    return f"the champion in {store.url} is {previous.describe()} again (was {champion.describe()})"


def _previous(store: Store, champion: Champion) -> Champion | None:
    """The version that ``champion``'s promotion replaced, with what it had replaced; None where unknown."""
    before = champion.pointer.previous
    if champion.legacy or not before:
        return None
    run_id, source = before["run_id"], before["source"]
    prefix = keys.champion_version_prefix(run_id, source)
    files = {key.removeprefix(prefix): store.sha256(key) for key in store.list(prefix)}
    if not files:
        return None
    with contextlib.suppress(CxrtlError, AttributeError, KeyError, TypeError):
        decided = store.get_json(keys.champion_version_key(run_id, source, DECISION_FILE)).get("champion")
        before = {"run_id": decided["run_id"], "source": decided["source"]} if decided else None
        return Champion(Pointer(run_id, source, files, before), None)
    return Champion(Pointer(run_id, source, files), None)
