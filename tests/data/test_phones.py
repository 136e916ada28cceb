from pronounce.data.phones import (
    annotation_pairs,
    canonical_sequence,
    normalise_phone,
    pronounced_sequence,
    pronounced_word,
)


def test_stress_digits_are_stripped_and_case_normalised():
    assert [normalise_phone(p) for p in ["AA0", "ih1", "EY2", "NG"]] == ["AA", "IH", "EY", "NG"]


def test_unk_is_kept_as_the_token_unk_in_any_case():
    assert normalise_phone("<UNK>") == "<unk>"
    assert pronounced_word(["G", "R", "EY0"], [{"index": 1, "pronounced_phone": "<unk>"}]) == ["G", "<unk>", "EY"]


def test_del_removes_the_phone():
    assert pronounced_word(["TH", "IY0", "M"], [{"index": 1, "pronounced_phone": "<DEL>"}]) == ["TH", "M"]


def test_star_marking_a_distorted_variant_is_stripped():
    assert normalise_phone("AH*") == "AH"
    assert pronounced_word(["TH", "IY0", "M"], [{"index": 1, "pronounced_phone": "AH*"}]) == ["TH", "AH", "M"]


def test_substitution_applies_at_the_index_within_its_word():
    words = [
        {"phones": ["DH", "EH0", "N"], "mispronunciations": []},
        {"phones": ["TH", "IY0", "M"], "mispronunciations": [{"index": 1, "pronounced_phone": "AH"}]},
    ]
    assert canonical_sequence(words) == ["DH", "EH", "N", "TH", "IY", "M"]
    assert pronounced_sequence(words) == ["DH", "EH", "N", "TH", "AH", "M"]


def test_annotation_pairs_follow_the_indices_of_the_annotation():
    # AW AH K heard as AH AH, annotated as AW deleted and K -> AH: the pairing keeps exactly that
    # (an aligner's tie would give AW -> AH, K deleted); a `*` variant of the canonical phone pairs
    # with itself (counted as correct).
    words = [
        {"phones": ["AW1", "AH0", "K"], "mispronunciations": [
            {"index": 0, "pronounced_phone": "<DEL>"}, {"index": 2, "pronounced_phone": "AH"}]},
        {"phones": ["IY0", "T"], "mispronunciations": [{"index": 0, "pronounced_phone": "IY*"},
                                                      {"index": 1, "pronounced_phone": "<UNK>"}]},
    ]
    assert annotation_pairs(words) == [("AW", None), ("AH", "AH"), ("K", "AH"), ("IY", "IY"), ("T", "<unk>")]
    assert [a for _, a in annotation_pairs(words) if a] == pronounced_sequence(words)
