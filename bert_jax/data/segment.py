"""Raw text -> paragraphs -> sentences, with blingfire's sentence splitter.

A paragraph is a run of non-blank lines; its hard-wrapped lines are joined
with a space before splitting, so a sentence never ends at a line break that
was only a wrap. Sentences longer than `MAX_SENTENCE_CHARS` (a 10 MB line with
no full stop, a minified blob) are cut at whitespace into pieces of at most
that size, so one bad line costs neither memory nor time downstream.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator

import blingfire

# Far above any real sentence (BERT's longest segment is 512 tokens, ~3000
# characters); a longer "sentence" is a line with no punctuation.
MAX_SENTENCE_CHARS = 20_000


def paragraphs(lines: Iterable[str | None]) -> Iterator[str]:
    """Join runs of non-blank lines into one-line paragraphs.

    A blank line ends a paragraph; so does `None` (a reader's hard break, e.g.
    around the pieces of a cut over-long line).
    """
    current: list[str] = []
    for line in lines:
        stripped = line.strip() if line is not None else ""
        if stripped:
            current.append(stripped)
        elif current:
            yield " ".join(current)
            current = []
    if current:
        yield " ".join(current)


def split_long(text: str, max_chars: int = MAX_SENTENCE_CHARS) -> list[str]:
    """`text` cut into pieces of at most `max_chars` characters, at the last space when there is one."""
    pieces, start = [], 0
    while len(text) - start > max_chars:
        space = text.rfind(" ", start, start + max_chars + 1)
        cut = space if space > start else start + max_chars
        pieces.append(text[start:cut].strip())
        start = cut + (cut == space)  # the space itself belongs to neither piece
    pieces.append(text[start:].strip())
    return [p for p in pieces if p]


def split_sentences(paragraph: str) -> tuple[list[str], int]:
    """Sentences of one paragraph, and how many over-long ones had to be cut.

    Returns (sentences, number of sentences longer than MAX_SENTENCE_CHARS).
    """
    sentences: list[str] = []
    cut = 0
    for sentence in blingfire.text_to_sentences(paragraph).split("\n"):
        sentence = sentence.strip()
        if len(sentence) > MAX_SENTENCE_CHARS:
            cut += 1
            sentences.extend(split_long(sentence))
        elif sentence:
            sentences.append(sentence)
    return sentences, cut
