"""Where a retry of a machine not pinned to a host is steered (``pick_node``), on
in-memory node lists shaped like ``ray.nodes()``; the real cluster's retries are in
``test_ray.py``."""

from __future__ import annotations

from typing import Any

from p2vimage.batch.ray_engine import pick_node


def node(node_id: str, p2v: float = 1, alive: bool = True) -> dict[str, Any]:
    resources = {"CPU": 2.0, f"node:10.0.0.{len(node_id)}": 1.0}
    if p2v:
        resources["p2v"] = p2v
    return {"NodeID": node_id, "Alive": alive, "Resources": resources}


def test_another_live_p2v_node_the_least_loaded_first() -> None:
    nodes = [node("a"), node("b", 2), node("c"), node("d", p2v=0), node("e", alive=False)]
    assert pick_node(nodes, "a", {}) == "b"  # ties: by node id, stable across calls
    assert pick_node(nodes, "a", {"b": 1}) == "c"
    assert pick_node(nodes, "c", {"b": 1}) == "a"
    # never the node it failed on, a dead node or one that offers no p2v
    assert pick_node(nodes, "b", {"d": 0, "e": 0}) in {"a", "c"}


def test_a_full_node_is_not_waited_for() -> None:
    """Ray's soft affinity waits for a busy live node: only a node with a free p2v slot
    (by this driver's own count) is preferred; none free, no preference."""
    nodes = [node("a"), node("b", 2), node("c")]
    assert pick_node(nodes, "a", {"b": 2, "c": 0}) == "c"
    assert pick_node(nodes, "a", {"b": 1, "c": 1}) == "b"  # one of its two slots free
    assert pick_node(nodes, "a", {"b": 2, "c": 1}) is None
    assert pick_node(nodes, "a", {"b": 5, "c": 5}) is None


def test_no_other_node_no_preference() -> None:
    assert pick_node([node("a"), node("b", alive=False), node("c", p2v=0)], "a", {}) is None
    assert pick_node([], "a", {}) is None
