"""``benchmarks.ensemble`` picks the ensemble's members by their val scores."""

from __future__ import annotations

import numpy as np

from benchmarks import ensemble


def test_two_models_with_opposite_errors_beat_each_alone() -> None:
    truth = np.array([10.0, 20.0, 30.0, 40.0])
    outputs = {
        "high": truth + 2.0,
        "low": truth - 2.0,
        "noisy": truth + np.array([5.0, -5.0, 5.0, -5.0]),
    }
    ranked = ensemble.rank_sets(outputs, truth, max_members=2, task="age")
    assert ranked[0] == (("high", "low"), 0.0)
    assert dict(ranked)[("high",)] == 2.0
    assert ensemble.choose(ranked, ensemble.AGE_TIE) == ("high", "low")


def test_a_smaller_set_wins_a_tie() -> None:
    truth = np.array([10.0, 20.0])
    outputs = {"a": truth + np.array([1.0, 0.01]), "b": truth + np.array([1.0, -0.01])}
    ranked = ensemble.rank_sets(outputs, truth, max_members=2, task="age")
    assert ranked[0][0] == ("a", "b")  # 0.500 against 0.505 alone
    assert ensemble.choose(ranked, ensemble.AGE_TIE) in {("a",), ("b",)}
    assert ensemble.choose(ranked, 0.0) == ("a", "b")


def test_gender_is_scored_by_accuracy_of_the_mean_probability() -> None:
    truth = np.array([1.0, 1.0, 0.0, 0.0])  # 1 = female
    outputs = {
        "sure": np.array([0.9, 0.9, 0.1, 0.9]),  # wrong on the last face
        "unsure": np.array([0.6, 0.4, 0.4, 0.0]),  # wrong on the second face
    }
    ranked = ensemble.rank_sets(outputs, truth, max_members=2, task="gender")
    assert ranked[0] == (("sure", "unsure"), 1.0)  # the mean is right on every face
    assert dict(ranked)[("sure",)] == 0.75


def test_faces_a_member_missed_are_left_out_of_every_score() -> None:
    truth = np.array([10.0, 20.0, 30.0])
    outputs = {"a": np.array([10.0, np.nan, 31.0]), "b": np.array([12.0, 99.0, 30.0])}
    scores = dict(ensemble.rank_sets(outputs, truth, max_members=2, task="age"))
    assert scores[("a",)] == 0.5
    assert scores[("b",)] == 1.0  # the 99 on the face "a" missed does not count


def test_the_description_names_the_members() -> None:
    text = ensemble.description(["c3ae", "hsrnet", "mobileagenet"], ["mobileagenet"])
    assert "c3ae, hsrnet and mobileagenet" in text
    assert "P(female) of mobileagenet averaged" in text


def test_a_set_never_holds_one_net_twice() -> None:
    truth = np.array([10.0, 20.0])
    outputs = {
        "net": truth + np.array([1.0, -1.0]),
        "net-int8": truth + np.array([-1.0, 1.0]),  # would cancel "net" out, but is "net"
        "net-gender": truth + np.array([1.0, -1.0]),  # the same age output as "net"
        "other": truth + 3.0,
    }
    ranked = ensemble.rank_sets(outputs, truth, max_members=3, task="age")
    sets = [members for members, _ in ranked]
    assert ("net", "net-int8") not in sets
    assert all("net-gender" not in members for members in sets)
    assert ("net-int8", "other") in sets


def test_of_equal_scores_the_faster_set_is_chosen() -> None:
    truth = np.array([1.0, 0.0])
    outputs = {"big": np.array([0.9, 0.2]), "big-int8": np.array([0.8, 0.3])}
    ranked = ensemble.rank_sets(outputs, truth, max_members=1, task="gender")
    assert [score for _, score in ranked] == [1.0, 1.0]
    assert ensemble.choose(ranked, 0.0, {"big": 6.3, "big-int8": 2.1}) == ("big-int8",)
    assert ensemble.choose(ranked, 0.0, {"big": 1.0, "big-int8": 2.1}) == ("big",)


def test_within_the_tie_the_cheaper_set_of_the_same_size_wins() -> None:
    ranked = [(("a", "big"), 4.775), (("a", "big-int8"), 4.782), (("a", "other"), 4.80)]
    cost = {"a": 0.4, "big": 4.6, "big-int8": 3.9, "other": 0.1}
    assert ensemble.choose(ranked, 0.01, cost) == ("a", "big-int8")
    assert ensemble.choose(ranked, 0.0, cost) == ("a", "big")  # no tie: the best
    assert ensemble.choose(ranked, 0.01) == ("a", "big")  # no costs known: the best


def test_each_data_set_counts_alike_however_many_faces_it_holds() -> None:
    # three faces of one set where "a" is exact and "b" 1 year off, one face of another
    # where "a" is 6 years off and "b" exact: pooled, a scores 1.5 and b 0.75; per set,
    # a scores (0 + 6) / 2 = 3 and b (1 + 0) / 2 = 0.5
    truth = np.array([10.0, 20.0, 30.0, 40.0])
    outputs = {"a": truth + np.array([0.0, 0.0, 0.0, 6.0]), "b": truth + np.array([1, 1, 1, 0.0])}
    groups = np.array([0, 0, 0, 1])
    pooled = dict(ensemble.rank_sets(outputs, truth, max_members=1, task="age"))
    per_set = dict(ensemble.rank_sets(outputs, truth, max_members=1, task="age", groups=groups))
    assert pooled[("a",)] == 1.5 and pooled[("b",)] == 0.75
    assert per_set[("a",)] == 3.0 and per_set[("b",)] == 0.5
