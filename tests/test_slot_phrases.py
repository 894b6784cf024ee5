from __future__ import annotations

from pathlib import Path

import pytest

from voicebot.dialplan import load_dialplan
from voicebot.script.slot_phrases import slot_phrases
from voicebot.script.slots import extract_slot

ROOT = Path(__file__).parent.parent


@pytest.mark.parametrize("language", ["en", "ru"])
@pytest.mark.parametrize("slot_type", ["time", "number", "digits", "yes_no"])
def test_every_phrase_a_grammar_allows_is_readable_by_the_extractor(language, slot_type):
    phrases = slot_phrases(slot_type, language)
    assert phrases and len(phrases) <= 500  # a grammar that stays fast to build and decode
    unreadable = [p for p in phrases if extract_slot(slot_type, p, language) is None]
    assert not unreadable


def test_free_text_and_unknown_languages_have_no_grammar():
    assert slot_phrases("text", "en") is None
    assert slot_phrases("time", "ko") is None


def test_node_vocabulary_includes_its_slot_and_free_text_lifts_the_grammar():
    graph = load_dialplan(ROOT / "dialplans" / "demo_en.yaml").graph
    callback = graph.nodes["ask_callback"].vocabulary()
    assert "tomorrow at three" in callback and "not interested" in callback
    assert graph.nodes["discovery"].vocabulary() == []  # an open question: recognise anything
    assert "yes" in graph.nodes["greeting"].vocabulary()
