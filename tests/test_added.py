"""Added-token contents are found in a text exactly where a scan of every position finds them."""

from hypothesis import given, strategies as st

from invscale.scoring.added import AddedContents

alphabet = st.sampled_from("<|>ab ")
texts = st.lists(alphabet, max_size=24).map("".join)
contents = st.lists(st.lists(alphabet, min_size=1, max_size=5).map("".join), min_size=1, max_size=4)


def occurrences(text, found):
    """(start, end) of every occurrence of every content, overlapping ones included."""
    return [(i, i + len(c)) for c in found for i in range(len(text)) if text.startswith(c, i)]


@given(text=texts, found=contents, start=st.integers(0, 26))
def test_found_in_is_any_occurrence_ending_past_the_start(text, found, start):
    expected = any(end > start for _, end in occurrences(text, found))
    assert AddedContents(found).found_in(text, start) == expected


@given(text=texts, found=contents, end=st.integers(0, 26))
def test_could_start_is_the_earliest_start_that_what_follows_could_complete(text, found, end):
    end = min(end, len(text))
    expected = min([q for q in range(end) for c in found if len(c) > end - q and c.startswith(text[q:end])] + [end])
    assert AddedContents(found).could_start(text, end) == expected


def test_no_contents_is_false_and_longest_first():
    assert not AddedContents(["", ""])
    added = AddedContents(["<s>", "<|endoftext|>", "</s>"])
    assert added.contents[0] == "<|endoftext|>" and added.longest == 13
    assert added.found_in("a <|endoftext|> b") and not added.found_in("a <|endoftext| b")
