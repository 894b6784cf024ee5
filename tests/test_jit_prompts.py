"""Just-in-time prompts: what a contact's call says, the byte budget, the renderer's order, the generic form.

Logic only: a thread pool and an instant fake TTS stand in for the rendering processes and Piper.
The run with real processes and sipp is tests/test_mass_campaign.py.
"""

from __future__ import annotations

import concurrent.futures
import threading
from pathlib import Path

import pytest

from voicebot.apps.campaign_cli import prompt_cache_note
from voicebot.audio.frames import AudioFormat
from voicebot.campaign.jit_prompts import FallbackPrompts, JitRenderer, open_budget
from voicebot.campaign.prompt_budget import PromptBudget
from voicebot.campaign.prompts import PersonalPrompts, static_texts
from voicebot.dialplan import load_dialplan
from voicebot.errors import ConfigError
from voicebot.speech.prompt_cache import PromptCache

DEMO = Path(__file__).parent.parent / "dialplans" / "demo_en.yaml"


class SilentTts:
    """0.1 s of silence per word, counting what it was asked for."""

    voice_id = "silent"

    def __init__(self) -> None:
        self.texts: list[str] = []
        self.lock = threading.Lock()

    def synthesize(self, text: str, rate_hz: int) -> bytes:
        with self.lock:
            self.texts.append(text)
        return AudioFormat(rate_hz).silence(100 * len(text.split()))


@pytest.fixture(scope="module")
def demo():
    return load_dialplan(DEMO).graph


# --- the texts ------------------------------------------------------------------------------------------


def test_a_contacts_texts_and_their_generic_forms(demo) -> None:
    personal = PersonalPrompts.of(demo)
    anna = {"first_name": "Anna", "company": "Northwind"}
    texts = personal.texts(anna)
    assert texts and all("Anna" in t or "Northwind" in t for t in texts)
    generic = personal.generic(anna)
    assert set(generic) == set(texts)
    greeting = next(t for t in texts if t.startswith("Hi Anna"))
    assert generic[greeting].startswith("Hi there")  # {first_name|there}
    assert set(generic.values()) <= set(personal.generic_texts())
    assert not set(personal.generic_texts()) & set(static_texts(demo))  # each kind rendered once, by its own list
    # a contact with no first name says the generic greeting itself: shared, nothing to fall back from
    assert next(t for t in personal.texts({"company": "Northwind"}) if t.startswith("Hi ")).startswith("Hi there")


# --- the budget --------------------------------------------------------------------------------------------


def test_the_budget_evicts_least_recently_used_and_never_a_pinned_entry() -> None:
    removed: list[str] = []
    budget = PromptBudget(100, removed.append)
    budget.add("static", 30, permanent=True)
    budget.add("a", 30)
    budget.add("b", 30)
    budget.touch("a")  # b is now the least recently used
    assert budget.reserve(30) and removed == ["b"]
    assert budget.add("c", 30, reserved=30)
    budget.pin("a")
    budget.pin("c")
    assert not budget.reserve(30), "everything left is pinned: the render must wait"
    assert budget.bytes <= 100 and budget.stats().refused == 1
    budget.unpin("c")
    assert budget.reserve(30) and removed == ["b", "c"]
    assert "static" in budget and budget.peak <= 100


def test_an_entry_larger_than_its_estimate_is_corrected_at_once() -> None:
    removed: list[str] = []
    budget = PromptBudget(100, removed.append)
    budget.add("old", 50)
    assert budget.reserve(10)
    assert budget.add("big", 60, reserved=10)  # the estimate was short: the oldest makes room
    assert removed == ["old"] and budget.bytes == 60 and budget.reserved == 0


def test_a_budget_smaller_than_the_static_prompts_is_refused_with_the_setting_named(tmp_path: Path) -> None:
    cache = PromptCache(tmp_path, SilentTts())
    cache.get("a static prompt of several words", 8000)
    with pytest.raises(ConfigError, match=r"prompt_cache\.budget_mb"):
        open_budget(tmp_path, 100, [cache.path("a static prompt of several words", 8000)])


def test_files_an_earlier_run_left_are_trimmed_to_the_budget_oldest_first(tmp_path: Path) -> None:
    cache = PromptCache(tmp_path, SilentTts())
    for n in range(10):
        cache.get(f"old prompt number {n}", 8000)
    sizes = [cache.path(f"old prompt number {n}", 8000).stat().st_size for n in range(10)]
    budget = open_budget(tmp_path, sum(sizes[:4]), [])
    assert budget.bytes <= sum(sizes[:4])
    assert sum(1 for _ in tmp_path.glob("*/*.pcm")) == budget.stats().entries == 4


# --- the renderer -------------------------------------------------------------------------------------------


def _renderer(graph, tmp_path: Path, budget_bytes: int = 50_000_000, workers: int = 2):
    tts = SilentTts()
    cache = PromptCache(tmp_path, tts)

    def render(text: str) -> int:
        cache.get(text, 8000)
        return cache.path(text, 8000).stat().st_size

    budget = PromptBudget(budget_bytes, lambda key: Path(key).unlink(missing_ok=True))
    executor = concurrent.futures.ThreadPoolExecutor(workers)
    renderer = JitRenderer(PersonalPrompts.of(graph), budget, lambda t: str(cache.path(t, 8000)), render, executor, workers)
    return renderer, tts, cache


def _drain(renderer: JitRenderer) -> None:
    for _ in range(200):
        renderer.wait_idle(1.0)
        if not renderer.stats()["rendering"] and not renderer.stats()["queued"]:
            return
    raise AssertionError(f"the renderer never went idle: {renderer.stats()}")


def test_contacts_ahead_are_rendered_once_per_distinct_text_and_a_dialled_one_goes_first(demo, tmp_path: Path) -> None:
    renderer, tts, cache = _renderer(demo, tmp_path, workers=1)
    try:
        ahead = [(i, {"first_name": f"Name{i % 3}", "company": "Northwind"}) for i in range(30)]
        renderer.lookahead(ahead)
        renderer.pump()  # one render starts (one worker)
        assert not renderer.dialling(29, ahead[29][1]), "nothing of contact 29 can be ready yet"
        renderer.pump()
        _drain(renderer)
        per_contact = len(renderer.personal.texts(ahead[0][1]))
        assert len(tts.texts) == len(set(tts.texts)) == 3 * per_contact  # three distinct first names
        assert renderer.stats()["shared"] == 27 * per_contact
        assert tts.texts[per_contact].startswith("Hi Name2"), "the dialled contact's texts were rendered next"
        assert all(renderer.ready(i) for i, _ in ahead)
        assert renderer.dialling(0, ahead[0][1])
    finally:
        renderer.close()


def test_texts_nobody_wants_any_more_are_never_rendered(demo, tmp_path: Path) -> None:
    renderer, tts, _ = _renderer(demo, tmp_path, workers=1)
    try:
        renderer.lookahead([(1, {"first_name": "Ann", "company": "A"}), (2, {"first_name": "Bob", "company": "B"})])
        renderer.lookahead([(1, {"first_name": "Ann", "company": "A"})])  # contact 2 is no longer due soon
        renderer.dialling(1, {"first_name": "Ann", "company": "A"})
        renderer.pump()
        _drain(renderer)
        assert tts.texts and not any("Bob" in t for t in tts.texts)
        assert renderer.stats()["dropped"] > 0
    finally:
        renderer.close()


def test_the_cache_stays_under_its_budget_while_contacts_come_and_go(demo, tmp_path: Path) -> None:
    renderer, _, cache = _renderer(demo, tmp_path, budget_bytes=300_000)
    try:
        for i in range(40):
            fields = {"first_name": f"Person{i}", "company": f"Company {i}"}
            renderer.lookahead([(i, fields)])
            renderer.dialling(i, fields)
            renderer.pump()
            _drain(renderer)
            on_disk = sum(p.stat().st_size for p in tmp_path.glob("*/*.pcm"))
            assert on_disk <= 300_000, f"after contact {i}: {on_disk} bytes on disk"
            renderer.ended(i)
        stats = renderer.stats()
        assert stats["evicted"] > 0 and stats["peak_bytes"] <= 300_000
    finally:
        renderer.close()


def test_a_failing_tts_costs_the_personal_form_and_nothing_else(demo, tmp_path: Path) -> None:
    budget = PromptBudget(10_000_000, lambda key: None)

    def render(text: str) -> int:
        raise RuntimeError("piper crashed")

    renderer = JitRenderer(PersonalPrompts.of(demo), budget, lambda t: t, render, concurrent.futures.ThreadPoolExecutor(1), workers=1)
    try:
        renderer.dialling(1, {"first_name": "Ann", "company": "A"})
        renderer.pump()
        _drain(renderer)
        assert renderer.stats()["failed"] > 0 and not renderer.ready(1)
        assert budget.reserved == 0
    finally:
        renderer.close()


# --- at the answer ---------------------------------------------------------------------------------------------


def test_a_call_says_the_generic_form_until_the_personal_one_is_rendered(demo, tmp_path: Path) -> None:
    tts = SilentTts()
    cache = PromptCache(tmp_path, tts)
    personal = PersonalPrompts.of(demo)
    for text in personal.generic_texts():
        cache.get(text, 8000)
    anna = {"first_name": "Anna", "company": "Northwind"}
    greeting = next(t for t in personal.texts(anna) if t.startswith("Hi Anna"))
    source = FallbackPrompts(cache, personal.generic(anna))
    asked = len(tts.texts)

    pcm = source.get(greeting, 8000)
    assert len(tts.texts) == asked, "no synthesis at the answer"
    assert pcm == cache.get(personal.generic(anna)[greeting], 8000)
    assert source.fell_back == [greeting]

    cache.get(greeting, 8000)  # rendered while the call went on
    assert source.get(greeting, 8000) == cache.get(greeting, 8000)
    assert source.fell_back == [greeting]
    # the record says what was heard: the first greeting in its generic form, the second as written
    said = [{"speaker": "bot", "text": greeting}, {"speaker": "customer", "text": "hi"}, {"speaker": "bot", "text": greeting}]
    generic = personal.generic(anna)[greeting]
    assert [line["text"] for line in source.as_played(said)] == [generic, "hi", greeting]


def test_the_status_line_shows_the_cache_against_its_budget_and_the_backlog(demo, tmp_path: Path) -> None:
    renderer, _, _ = _renderer(demo, tmp_path, budget_bytes=256_000_000, workers=1)
    try:
        renderer.dialling(1, {"first_name": "Ann", "company": "A"})
        note = prompt_cache_note(renderer.stats())
        assert note.startswith("prompts 0.0/256 MB") and "to render" in note and "1 dialled before theirs were ready" in note
        renderer.pump()
        _drain(renderer)
        assert prompt_cache_note(renderer.stats()).endswith("1 dialled before theirs were ready")
    finally:
        renderer.close()
