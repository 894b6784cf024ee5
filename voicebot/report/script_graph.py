"""The script graph as reports see it: nodes, labelled edges, a layered layout, the main path."""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

from voicebot.script.graph import ScriptGraph


@dataclass(frozen=True)
class Edge:
    source: str
    target: str
    label: str  # the intent, "dtmf 1", "capture", "next", "no match", "no input", "transfer failed"


@dataclass(frozen=True)
class ScriptShape:
    start: str
    nodes: tuple[str, ...]  # in dialplan order
    kinds: dict[str, str]  # listen | say | hangup | transfer
    outcomes: dict[str, str]  # node -> the outcome its hangup gives
    edges: tuple[Edge, ...]  # explicit edges only
    global_targets: tuple[str, ...]  # where global intents and the fallback may jump from any listening node

    @classmethod
    def of(cls, graph: ScriptGraph) -> ScriptShape:
        script = graph.dialplan.script
        edges: list[Edge] = []
        kinds: dict[str, str] = {}
        outcomes: dict[str, str] = {}
        for node_id, compiled in graph.nodes.items():
            n = compiled.node
            kinds[node_id] = "transfer" if n.transfer else "hangup" if n.hangup else "listen" if n.listens else "say"
            if n.hangup:
                outcomes[node_id] = n.hangup
            if n.next:
                edges.append(Edge(node_id, n.next, "next"))
            if n.on_transfer_fail:
                edges.append(Edge(node_id, n.on_transfer_fail, "transfer failed"))
            if n.capture and n.capture.next:
                edges.append(Edge(node_id, n.capture.next, "capture"))
            for name, route in n.intents.items():
                if route.next:
                    edges.append(Edge(node_id, route.next, name))
            for key, route in n.dtmf.items():
                if route.next:
                    edges.append(Edge(node_id, route.next, f"dtmf {key}"))
            for label, fallback in (("no match", n.on_no_match), ("no input", n.on_no_input)):
                if fallback.next:
                    edges.append(Edge(node_id, fallback.next, label))
        targets = [r.next for r in script.global_intents.values() if r.next]
        if script.fallback:
            targets.append(script.fallback)
        return cls(
            start=graph.start,
            nodes=tuple(graph.nodes),
            kinds=kinds,
            outcomes=outcomes,
            edges=tuple(edges),
            global_targets=tuple(dict.fromkeys(targets)),
        )

    def successors(self, node: str) -> list[str]:
        return list(dict.fromkeys(e.target for e in self.edges if e.source == node))

    def main_path(self, goals: tuple[str, ...], detours: Callable[[str], bool] = lambda node: False) -> list[str]:
        """The shortest way from the start to a node that hangs up with a goal outcome ([] if none).
        Nodes for which ``detours`` is true (objection handling) are avoided when another way
        exists: a way round an objection is shorter, but it is not the conversation the script means."""
        return self._shortest(goals, detours) or self._shortest(goals, lambda node: False)

    def _shortest(self, goals: tuple[str, ...], avoid: Callable[[str], bool]) -> list[str]:
        goal_nodes = {n for n, o in self.outcomes.items() if o in goals}
        parent: dict[str, str | None] = {self.start: None}
        todo = deque([self.start])
        while todo:
            node = todo.popleft()
            if node in goal_nodes:
                path = [node]
                while (prev := parent[path[-1]]) is not None:
                    path.append(prev)
                return path[::-1]
            for nxt in self.successors(node):
                if nxt not in parent and not avoid(nxt):
                    parent[nxt] = node
                    todo.append(nxt)
        return []

    def layers(self) -> dict[str, int]:
        """Each node's depth: its distance from the start along explicit edges. Nodes only
        global intents or the fallback lead to go one layer below the deepest, so the
        conversation's own flow reads top to bottom and the exits sit at the bottom."""
        depth = {self.start: 0}

        def spread(todo: deque[str]) -> None:  # breadth first: each node one layer below its first parent
            while todo:
                node = todo.popleft()
                for nxt in self.successors(node):
                    if nxt not in depth:
                        depth[nxt] = depth[node] + 1
                        todo.append(nxt)

        spread(deque([self.start]))
        bottom = max(depth.values(), default=0) + 1
        for node in self.global_targets:
            if node not in depth:
                depth[node] = bottom
        spread(deque(n for n in self.global_targets if depth[n] == bottom))
        last = max(depth.values(), default=0) + 1
        for node in self.nodes:
            depth.setdefault(node, last)  # unreachable even by globals: validate warns; still drawn
        return depth

    def positions(self) -> dict[str, tuple[float, float]]:
        """x, y per node for drawing: layers top to bottom, and within a layer, nodes ordered by
        the mean position of their parents (one barycentre sweep) to keep edges from crossing."""
        layers = self.layers()
        by_layer: dict[int, list[str]] = {}
        for node in self.nodes:
            by_layer.setdefault(layers[node], []).append(node)
        x: dict[str, float] = {}
        for depth in sorted(by_layer):
            members = by_layer[depth]

            def centre(node: str) -> float:
                parents = [x[e.source] for e in self.edges if e.target == node and e.source in x and e.source != node]
                return sum(parents) / len(parents) if parents else 0.0

            members.sort(key=lambda n: (centre(n), self.nodes.index(n)))
            width = len(members)
            for i, node in enumerate(members):
                x[node] = i - (width - 1) / 2
        return {n: (x[n], -float(layers[n])) for n in self.nodes}
