"""A replayable workload for the answer cache: customer questions of a bike shop, in
English, French, Spanish and Swahili, two thirds asked for the first time and one third
repeating an earlier question in other words.

The base set is tests/data/answer_cache_workload.yaml: *families* of phrasings with
slots ("How much is a {product}?"), filled from per-language slot lists, and policy
questions without slots. A question's `key` (family + slot values) says which answer is
right. A first-time question uses one phrasing of a key never asked before; a repeat
uses a different phrasing of a key asked earlier (a paraphrase), so a cache can only
serve it by meaning. Many keys differ from an earlier one by one slot only (Sunday /
Saturday, Remera / Huye): a hit on a first-time question is always a wrong answer.

    questions = build_workload(total=1000, repeat_share=1/3, seed=7)
"""

from __future__ import annotations

import itertools
import random
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

import yaml

BASE_SET = Path(__file__).resolve().parents[1] / "data" / "answer_cache_workload.yaml"
POLICY = "policy"


@dataclass(frozen=True)
class WorkloadQuestion:
    text: str
    key: str  # family + slot values: the identity of the right answer
    agent: str
    repeat: bool  # a paraphrase of a question asked earlier in the workload


@dataclass(frozen=True)
class Key:
    family: str
    values: tuple[tuple[str, str], ...]
    agent: str
    phrasings: tuple[str, ...]

    @property
    def name(self) -> str:
        return self.family + ":" + "|".join(f"{k}={v}" for k, v in self.values)


@lru_cache(maxsize=1)
def base_set() -> dict[str, Any]:
    data: dict[str, Any] = yaml.safe_load(BASE_SET.read_text(encoding="utf-8"))
    return data


def all_keys() -> list[Key]:
    """Every distinct question of the base set, in a stable order."""
    data = base_set()
    keys = []
    for family, spec in data["families"].items():
        slots = spec["slots"]
        lists = [data["slots"][f"{spec['language']}.{slot}"] for slot in slots]
        for combo in itertools.product(*lists):
            values = dict(zip(slots, combo, strict=True))
            phrasings = tuple(template.format(**values) for template in spec["phrasings"])
            keys.append(Key(family, tuple(sorted(values.items())), spec["agent"], phrasings))
    for topic, phrasings in data["policies"].items():
        keys.append(Key(POLICY, (("topic", topic),), "customer_service", tuple(phrasings)))
    return keys


def build_workload(
    total: int = 1000, repeat_share: float = 1 / 3, seed: int = 7
) -> list[WorkloadQuestion]:
    rng = random.Random(seed)
    keys = all_keys()
    rng.shuffle(keys)
    repeats = round(total * repeat_share)
    firsts = total - repeats
    if firsts > len(keys):
        raise ValueError(f"only {len(keys)} distinct questions; ask for fewer")
    # A repeat can come anywhere after the first question.
    order = ["first"] * (firsts - 1) + ["repeat"] * repeats
    rng.shuffle(order)
    asked: list[tuple[Key, int]] = []
    workload: list[WorkloadQuestion] = []
    for kind in ["first", *order]:
        if kind == "first":
            key = keys[len(asked)]
            index = rng.randrange(len(key.phrasings))
            asked.append((key, index))
            workload.append(WorkloadQuestion(key.phrasings[index], key.name, key.agent, False))
            continue
        key, first_index = rng.choice(asked)
        other = rng.choice([i for i in range(len(key.phrasings)) if i != first_index])
        workload.append(WorkloadQuestion(key.phrasings[other], key.name, key.agent, True))
    return workload
