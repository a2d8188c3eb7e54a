"""Answer post-processing on outputs small models really wrote (issue 16), and the marginalisation maths."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from rag.generate.answer_copy import MAX_WORDS, EvidenceCopy, keeps_words
from rag.generate.answer_text import ABSTENTION, CheckedAnswer, answer_complete, check_answer, cite_as, shown_so_far
from rag.generate.evidence import SYSTEM_PROMPT, instruction_texts
from rag.generate.marginal import Candidate, evidence_prior, marginalise

INSTRUCTIONS = instruction_texts()
EVIDENCE_TEXT = "The manifest is renamed last (see https://example.org/docs/commit.html). Oil cost $12 in 1974."


def checked(raw: str, n: int = 3) -> CheckedAnswer:
    return check_answer(raw, n, INSTRUCTIONS, EVIDENCE_TEXT)


def test_the_quickstart_output_that_was_all_markup_is_no_answer() -> None:
    """What SmolLM2 printed for the quickstart: an invented evidence tag and an invented URL."""
    raw = '<evidence id="2"> <ref>https://www.datacodemix.com/2026-12-01/index-staying-consistent-when-a-writer</ref>'
    got = checked(raw)
    assert got == CheckedAnswer(ABSTENTION, (), (), "abstained")


@pytest.mark.parametrize(
    ("raw", "text", "numbers", "dropped", "status"),
    [
        ("October 1973 [1]", "October 1973 [1]", (1,), (), "cited"),
        ("answer: $12 [3, 7]", "$12 [3]", (3,), (7,), "cited"),
        ("$12 [3][3]", "$12 [3]", (3,), (), "cited"),
        ("Denver Broncos [2] [1].", "Denver Broncos [2][1].", (2, 1), (), "cited"),
        ("question: Who won?\nanswer: Denver Broncos [1]", "Denver Broncos [1]", (1,), (), "cited"),
        ('<evidence id="1" seal="abc">The manifest is renamed last [1].</evidence>',
         "The manifest is renamed last [1].", (1,), (), "cited"),
        ("It was 1979 (see https://invented.example.com/page) [2].", "It was 1979 [2].", (2,), (), "cited"),
        ("Docs at https://example.org/docs/commit.html [1]", "Docs at https://example.org/docs/commit.html [1]", (1,),
         (), "cited"),
        ("Paris", "Paris", (), (), "uncited"),
        ("Paris [9]", "Paris", (), (9,), "uncited"),
        ("I don't know [2].", ABSTENTION, (), (), "abstained"),
        ("I do not know.", ABSTENTION, (), (), "abstained"),
        ("The evidence does not contain the answer.", ABSTENTION, (), (), "abstained"),
        ("[4]", ABSTENTION, (), (4,), "abstained"),
        ("", ABSTENTION, (), (), "abstained"),
    ],
)  # fmt: skip
def test_answers_are_cleaned_and_their_citations_checked(
    raw: str, text: str, numbers: tuple[int, ...], dropped: tuple[int, ...], status: str
) -> None:
    assert checked(raw) == CheckedAnswer(text, numbers, dropped, status)  # type: ignore[arg-type]


def test_the_prompt_is_never_echoed_into_the_answer() -> None:
    echo = next(s for s in SYSTEM_PROMPT.split(". ") if s.startswith("Do not repeat"))
    today = "(As of today, 2026-12-01, give the most up-to-date answer)"
    raw = f"The writer renames the manifest last [2]. {echo}.\n{today}"
    assert checked(raw).text == "The writer renames the manifest last [2]."
    echoed = "You answer questions using only the numbered evidence provided."
    assert checked(echoed).status == "abstained"


def test_a_false_premise_correction_is_kept() -> None:
    raw = "The question's premise is false: the Super Bowl 50 was played in 2016, not 2015 [1]."
    got = checked(raw)
    assert got.status == "cited" and got.text == raw


def test_what_is_shown_while_streaming_adds_up_to_the_answer() -> None:
    raw = 'answer: <evidence id="2">The writer renames the manifest last [2]. You answer questions using only the'
    shown: list[str] = []
    for end in range(1, len(raw) + 1):
        now = shown_so_far(raw[:end], INSTRUCTIONS, EVIDENCE_TEXT)
        assert "<" not in now and "answer:" not in now
        if shown:
            assert now.startswith(shown[-1])  # only ever grows
        shown.append(now)
    final = checked(raw).text
    assert final == "The writer renames the manifest last [2]." and final.startswith(shown[-1].strip())
    assert "You answer" not in shown[-1]


def test_cite_as_replaces_the_candidate_own_marks() -> None:
    assert cite_as("October 1973 [1].", [3]) == "October 1973 [3]."
    assert cite_as("October 1973", [2]) == "October 1973 [2]"
    assert cite_as("The Broncos [1][3]", [2, 3]) == "The Broncos [2][3]"


def _candidate(chunk: str, raw: str, logprob: float | None) -> Candidate:
    return Candidate(chunk, check_answer(raw, 1, INSTRUCTIONS), logprob)


def test_marginalisation_sums_agreeing_candidates_and_ignores_abstentions() -> None:
    prior = evidence_prior([2.0, 1.0, 1.0])
    assert math.isclose(prior.sum(), 1.0) and prior[0] > prior[1] == prior[2]
    candidates = [
        _candidate("a", "1979 [1]", math.log(0.5)),
        _candidate("b", "October 1973 [1]", math.log(0.9)),
        _candidate("c", "october 1973.", math.log(0.8)),
    ]
    # alone, "1979" has 0.576 * 0.5 = 0.29; together the two "October 1973" have 0.21 * (0.9 + 0.8) = 0.36
    winner = marginalise(candidates, [2.0, 1.0, 1.0])
    assert winner is not None and winner.chunk_id == "b"
    abstaining = [_candidate("a", "I don't know.", 0.0), _candidate("b", "$12 [1]", math.log(0.1))]
    winner = marginalise(abstaining, [5.0, 0.0])
    assert winner is not None and winner.chunk_id == "b"
    assert marginalise([_candidate("a", "I don't know.", 0.0)], [1.0]) is None
    unknown = [_candidate("a", "x [1]", None), _candidate("b", "y [1]", None)]
    assert marginalise(unknown, [0.0, 1.0]).chunk_id == "b"  # type: ignore[union-attr]


@pytest.mark.parametrize(
    ("question", "raw", "text"),
    [
        ("The price of oil is usually a stable commodity until when?",
         "The price of oil is usually a stable commodity until the oil shock [1].", "The oil shock [1]."),
        ("The oil crisis caused oil companies to increase oil supplies in which area?",
         "The oil crisis caused oil companies to increase oil supplies in the Arctic [1].", "The Arctic [1]."),
        ("Who selects and hires the best ideas and appropriate contractors?",
         "The owner selects and hires the best ideas and appropriate contractors [1].", "The owner [1]."),
        ("What is an important personal decision for civil disobedients?",
         "An important personal decision for civil disobedients is whether or not to plead guilty. [3]",
         "Whether or not to plead guilty. [3]"),
        ("What Doctor Who spin-off series was commissioned by the BBC?",
         "The Doctor Who spin-off series commissioned by the BBC was Torchwood (2006–2011) [1].",
         "Torchwood (2006–2011) [1]."),
        ("The Bank of America Tower was previously known as what?",
         "The Bank of America Tower was previously known as the Barnett Center [2].", "The Barnett Center [2]."),
        ("What are the three sources of European Union law?",
         "The three sources of European Union law are primary law, secondary law, and supplementary law. The main "
         "sources of primary law are the Treaties establishing the European Union. [1]",
         "Primary law, secondary law, and supplementary law [1]."),
        # left alone: the shared words are the answer's own, a name, or all the answer says
        ("What was the first Super Bowl to use the standardized logo template?", "Super Bowl XLV [1]",
         "Super Bowl XLV [1]"),
        ("What did the United Methodist Church found?",
         "The United Methodist Church (UMC) is a mainline Protestant denomination [1].",
         "The United Methodist Church (UMC) is a mainline Protestant denomination [1]."),
        ("What about Luther declined as his antisemitism increased?",
         "Luther declined as his antisemitism increased [1].",
         "Luther declined as his antisemitism increased [1]."),
        ("What is the largest ABC station operator in terms of market reach?", "E. W. Scripps Company [1]",
         "E. W. Scripps Company [1]"),
        ("People behaving with civil disobedience is said to make society have more of what?", "more of what? [1]",
         "more of what? [1]"),
    ],
)  # fmt: skip
def test_the_shortest_answer_cuts_a_restated_question_and_what_follows_the_first_sentence(
    question: str, raw: str, text: str
) -> None:
    """Answers the 1.5B model wrote on squad-dev-a (docs/benchmarks.md), and what a user reads of them."""
    got = check_answer(raw, 3, INSTRUCTIONS, EVIDENCE_TEXT, question, max_sentences=1)
    assert got.text == text and got.status == "cited"


def test_a_restated_question_is_never_shown_while_streaming() -> None:
    question = "Who selects and hires the best ideas and appropriate contractors?"
    raw = "The owner selects and hires the best ideas and appropriate contractors [1]. The owner also pays."
    final = check_answer(raw, 3, INSTRUCTIONS, EVIDENCE_TEXT, question, max_sentences=1).text
    shown = ""
    for end in range(1, len(raw) + 1):
        now = shown_so_far(raw[:end], INSTRUCTIONS, EVIDENCE_TEXT, question, max_sentences=1)
        assert "selects" not in now and "pays" not in now
        assert now.startswith(shown)  # only ever grows
        shown = now
    assert final == "The owner [1]." and final.startswith(shown) and shown == "The owner"
    restating = "The price of oil is usually a stable commodity until the oil shock [1]."
    for end in range(1, len(restating)):
        now = shown_so_far(restating[:end], INSTRUCTIONS, EVIDENCE_TEXT, "The price of oil is usually a stable when?")
        assert "price" not in now


def test_the_generation_may_stop_once_the_first_sentence_is_written() -> None:
    assert not answer_complete("Torchwood [1].", 1)
    assert not answer_complete("E. W. Scripps Company", 1)
    assert answer_complete("Torchwood [1]. It ran", 1)
    assert not answer_complete("Torchwood [1]. It ran", 0)
    assert not answer_complete("Torchwood [1]. It ran", 2)
    assert not answer_complete("The Master is the archenemy. He", 1)  # its citation may be still to come
    assert check_answer("The Master is the archenemy. He is a Time Lord [2].", 3, max_sentences=1).text == (
        "The Master is the archenemy [2]."
    )


@pytest.fixture(scope="module")
def squad_passages(squad_dir: Path) -> dict[str, str]:
    """The squad-dev-a passages behind answers the 1.5B model wrote (eval/results/squad-dev-a-generate-150)."""
    wanted = {
        "Doctor_Who_9",
        "Martin_Luther_4",
        "Pharmacy_2",
        "Victoria_(Australia)_14",
        "Victoria_(Australia)_8",
        "American_Broadcasting_Company_2",
        "Super_Bowl_50_20",
        "Super_Bowl_50_49",
    }
    passages = {}
    with open(squad_dir / "corpus.jsonl", encoding="utf-8") as handle:
        for line in handle:
            row = json.loads(line)
            if row["_id"] in wanted:
                passages[row["_id"]] = f"{row['title']}\n{row['text']}"
    assert set(passages) == wanted
    return passages


def test_a_short_answer_the_evidence_does_not_hold_becomes_its_closest_span(squad_passages: dict[str, str]) -> None:
    """The model's slips from squad-dev-a (gold in brackets): '1963-1989' (1963–1989), '1905' (1505),
    'Healthcare professional' (health care professional), 'Freight service' (freight services)."""

    def copied(raw: str, *ids: str, max_words: int = MAX_WORDS) -> str:
        copy = EvidenceCopy({n: squad_passages[i] for n, i in enumerate(ids, start=1)}, max_words)
        return check_answer(raw, len(ids), INSTRUCTIONS, EVIDENCE_TEXT, max_sentences=1, copy=copy).text

    assert copied("1963-1989 [1].", "Doctor_Who_9") == "1963–1989 [1]."
    assert copied("1905 [1]", "Martin_Luther_4") == "1505 [1]"
    assert copied("Healthcare professional [1]", "Pharmacy_2") == "Health care professional [1]"
    assert copied("Freight service [2]", "Doctor_Who_9", "Victoria_(Australia)_14") == "Freight services [2]"
    # only the cited evidence is copied from: evidence 1 holds nothing close
    assert copied("Freight service [1]", "Doctor_Who_9", "Victoria_(Australia)_14") == "Freight service [1]"
    # what the evidence holds word for word, what is not close enough, and sentences stay as written
    assert copied("1975 [1]", "Victoria_(Australia)_8") == "1975 [1]"
    assert copied("Victoria [1]", "American_Broadcasting_Company_2") == "Victoria [1]"
    sentence = "He received a master's degree in 1905 [1]."
    assert copied(sentence, "Martin_Luther_4") == sentence
    assert copied("1905 [1]", "Martin_Luther_4", max_words=0) == "1905 [1]"  # off
    # a span that loses a word of the answer is no copy of it: the model knew the name from elsewhere
    assert copied("Gary Kubiak [1]", "Super_Bowl_50_20") == "Gary Kubiak [1]"  # not "And Kubiak"
    assert copied("Cam Newton [1]", "Super_Bowl_50_49") == "Cam Newton [1]"  # not "A Newton"
    assert keeps_words("By authorizing a half-penny sales tax", "authorized a half-penny sales tax")
    assert keeps_words("Healthcare professional", "health care professional")
    assert not keeps_words("The Denver Broncos", "the Broncos") and not keeps_words("2 weeks", "weeks")
    assert copied("I don't know.", "Martin_Luther_4") == ABSTENTION
    said = EvidenceCopy({1: "Asked about it, she said: I do not know."})  # close to an abstention: not copied
    assert check_answer("I don't know.", 1, INSTRUCTIONS, EVIDENCE_TEXT, copy=said).status == "abstained"


def test_a_small_number_is_written_as_its_evidence_writes_it(squad_passages: dict[str, str]) -> None:
    """'8' for 'eight' (squad-dev-a: "The television network has eight owned-and-operated ... stations"):
    no spelling is alike enough for the closest span, so the number is mapped."""
    abc = EvidenceCopy({1: squad_passages["American_Broadcasting_Company_2"]})
    assert check_answer("8 [1]", 1, INSTRUCTIONS, EVIDENCE_TEXT, max_sentences=1, copy=abc).text == "Eight [1]"
    digits = EvidenceCopy({1: "It won 4 of its 7 games.", 2: "Four judges sat."})
    assert digits.apply("Four [1].", [1]) == "4 [1]."  # the cited evidence's form
    assert digits.apply("Four [2].", [2]) == "Four [2]."  # already as written there
    assert digits.apply("4 [2]", [2]) == "Four [2]"
    assert digits.apply("Nine [1]", [1]) == "Nine [1]"  # written neither way: left as the model wrote it
    assert digits.apply("Twelve [1]", [1]) == "Twelve [1]" and digits.apply("4 games [1]", [1]) == "4 games [1]"
    assert EvidenceCopy({1: "He was one of 3 brothers."}).apply("1 [1]", [1]) == "One [1]"


def test_a_short_answer_is_held_back_while_it_may_still_be_copied(squad_passages: dict[str, str]) -> None:
    copy = EvidenceCopy({1: squad_passages["Pharmacy_2"]})
    raw = "Healthcare professional [1]."
    for end in range(1, len(raw) + 1):
        assert shown_so_far(raw[:end], INSTRUCTIONS, EVIDENCE_TEXT, max_sentences=1, copy=copy) == ""
    assert check_answer(raw, 1, INSTRUCTIONS, EVIDENCE_TEXT, max_sentences=1, copy=copy).text.startswith("Health care")
    longer = "A pharmacy technician in the UK is a health care professional [1]."
    shown = ""
    for end in range(1, len(longer) + 1):
        now = shown_so_far(longer[:end], INSTRUCTIONS, EVIDENCE_TEXT, max_sentences=1, copy=copy)
        assert now.startswith(shown)  # only ever grows
        shown = now
    final = check_answer(longer, 1, INSTRUCTIONS, EVIDENCE_TEXT, max_sentences=1, copy=copy).text
    assert final == longer and final.startswith(shown) and len(shown) > 40


def test_a_short_answer_cites_the_evidence_that_holds_it(squad_passages: dict[str, str]) -> None:
    """The model cites the wrong number at times ("Soap [2]" where evidence 3 holds "Soap"): a short answer
    that its cited evidence neither holds nor yields a close span of cites the evidences that hold it word
    for word, and says so (``matched``)."""
    copy = EvidenceCopy(
        {
            1: squad_passages["Martin_Luther_4"],
            2: squad_passages["Super_Bowl_50_49"],
            3: squad_passages["Super_Bowl_50_20"],
        }
    )

    def answered(raw: str, evidence: EvidenceCopy = copy) -> tuple[str, tuple[int, ...], str]:
        result = check_answer(raw, 3, INSTRUCTIONS, EVIDENCE_TEXT, max_sentences=1, copy=evidence)
        return result.text, result.numbers, result.how

    assert answered("Graham Gano [1]") == ("Graham Gano [2]", (2,), "matched")
    assert answered("Ted Ginn [3].") == ("Ted Ginn [2].", (2,), "matched")
    assert answered("1505 [2]") == ("1505 [1]", (1,), "matched")
    assert answered("The Broncos [1]") == ("The Broncos [2][3]", (2, 3), "matched")  # every one that holds it
    # what the cited evidence holds, or yields a close span of, keeps the model's citation
    assert answered("Graham Gano [2]") == ("Graham Gano [2]", (2,), "model")
    assert answered("Broncos [3][1]") == ("Broncos [3][1]", (3, 1), "model")
    assert answered("1905 [1]") == ("1505 [1]", (1,), "model")
    # held by no evidence, too long to be a span, cited nowhere, or the rule off: as the model wrote it
    assert answered("Peyton Manning [1]") == ("Peyton Manning [1]", (1,), "model")
    sentence = "Gano hit the uprights on a field goal attempt [1]."
    assert answered(sentence) == (sentence, (1,), "model")
    assert answered("Graham Gano") == ("Graham Gano", (), "model")
    off = EvidenceCopy(copy.passages, max_words=0)
    assert answered("Graham Gano [1]", off) == ("Graham Gano [1]", (1,), "model")


def test_a_citation_whose_whole_passage_holds_the_answer_stays(squad_passages: dict[str, str]) -> None:
    """The model reads highlights, its reader the whole passage: an answer that the cited evidence's
    highlight lacks but its whole passage holds keeps the model's citation."""
    passage = squad_passages["Super_Bowl_50_49"]
    miss = passage.index("After the miss")
    highlights = {1: passage[:miss], 2: passage[miss : passage.index("lead.") + 5]}  # Sanders: the second
    assert "Emmanuel Sanders" not in highlights[1] and "Emmanuel Sanders" in highlights[2]

    def cited(evidence: EvidenceCopy) -> tuple[str, tuple[int, ...], str]:
        result = check_answer("Emmanuel Sanders [1]", 2, INSTRUCTIONS, EVIDENCE_TEXT, max_sentences=1, copy=evidence)
        return result.text, result.numbers, result.how

    assert cited(EvidenceCopy(highlights)) == ("Emmanuel Sanders [2]", (2,), "matched")
    whole = {1: passage, 2: squad_passages["Super_Bowl_50_20"]}
    assert cited(EvidenceCopy(highlights, whole=whole)) == ("Emmanuel Sanders [1]", (1,), "model")
