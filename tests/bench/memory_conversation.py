"""The scripted conversation the memory benchmark plays (a bike shop's customer and the
agent's replies) and the production graph it is played through.

Apart from tests/bench/bench_memory.py because all four of its measurements share it:
the same customer messages are embedded, recalled, counted and checkpointed, and
the same graph answers them. The benchmark file keeps only what each one measures.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

from langchain_core.language_models import BaseChatModel
from langchain_openai import ChatOpenAI

from graph.composition.agent_configs import load_default_agents
from graph.composition.builder import ConversationGraph, build_graph
from graph.composition.memory import ConversationMemory, open_memory
from graph.composition.prompts import load_prompts
from graph.composition.routing import build_router
from graph.context import ConversationContext
from graph.infra.database import Pool, create_checkpointer, open_pool
from graph.infra.embeddings import build_embeddings
from graph.settings import Settings
from graph.state import customer_message
from tests.bench.common import demo_business_tools
from tests.fakes.openai_server import FakeOpenAIServer
from tests.support import service_settings

CUSTOMER = "250788000777"

MESSAGES = [
    "Hi, what time do you open on Saturday?",
    "I would like to rent a city bike for two days next week, is that possible?",
    "How much is a mountain bike per day, and do you need a deposit?",
    "ok thanks",
    "My chain keeps falling off when I change gears on the hill near Kimihurura.",
    "Can I pay with MTN mobile money or only cash?",
    "Do you have helmets for children? My daughter is 9.",
    "What happens if it rains and I want to cancel my booking?",
    "Is the cafe open in the afternoon? I am vegetarian, anything for me?",
    "Great, please book the city bike for Saturday morning.",
    "Can you also fix a flat tyre today? I am near the shop.",
    "How long does a full service take for a road bike?",
    "Do you deliver bikes to hotels in Nyarutarama?",
    "I lost my receipt, can you send it again?",
    "Perfect, see you tomorrow at 9",
]
REPLIES = [
    "We open at 8:00 on Saturdays and close at 18:00. You can come any time; for rentals "
    "it is best to book a day ahead so a bike is ready and checked for you.",
    "Yes, a city bike costs 8,000 RWF a day, so 16,000 RWF for two days. I can book it now "
    "if you tell me the dates; we ask for an ID or a 20,000 RWF deposit at pick-up.",
    "A mountain bike is 15,000 RWF a day. The deposit is 30,000 RWF or an ID document, "
    "returned when you bring the bike back in good condition.",
    "You're welcome! Anything else I can help you with today?",
    "That usually means the rear derailleur needs adjusting or the chain is worn. Our "
    "workshop can check it in about 20 minutes; a basic adjustment costs 3,000 RWF.",
    "Both: MTN MoMo, Airtel Money and cash. Card payments work at the shop counter too.",
    "Yes, we have children's helmets in sizes S and M for 6,000 RWF; size S fits most "
    "children around 8 to 10 years old. Rentals include a helmet for free.",
    "You can cancel free of charge until 24 hours before the start. After that we keep "
    "half of the first day; if it rains heavily we move your booking at no cost.",
    "The cafe is open from 10:00 to 17:00. There is a vegetable curry and avocado toast "
    "that are fully vegetarian, and fresh juices.",
    "Done: a city bike is booked for Saturday from 9:00. Your reference is BK-4821; "
    "bring an ID or the deposit when you pick it up.",
    "Yes, a flat tyre repair takes about 15 minutes and costs 2,000 RWF with a new tube. "
    "Just come by, no appointment is needed.",
    "A full service takes about two hours, sometimes the same day if you drop it off in "
    "the morning; it costs 15,000 RWF including cleaning and adjustments.",
    "We deliver to hotels in Kigali for 3,000 RWF each way, including Nyarutarama. Tell "
    "me the hotel name and the time, and I will arrange it.",
    "Of course, I have sent the receipt for your last payment again; you should see it "
    "in this chat in a moment.",
    "Great, see you tomorrow at 9:00! Have a nice evening.",
]


def settings_for(db_url: str, openai: FakeOpenAIServer, **overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "openai_api_key": "sk-test",
        "openai_base_url": openai.base_url + "/v1",
        "router_llm": False,
        "log_level": "WARNING",
    }
    values.update(overrides)
    return service_settings(db_url, **values)


def chat_model(openai: FakeOpenAIServer) -> BaseChatModel:
    return ChatOpenAI(
        model="gpt-4o-mini", base_url=openai.base_url + "/v1", api_key="sk-test", max_retries=0
    )


@dataclass
class Bench:
    graph: ConversationGraph
    memory: ConversationMemory
    pool: Pool

    async def say(self, thread: str, text: str, customer: str = CUSTOMER) -> None:
        config: Any = {"configurable": {"thread_id": thread}}
        turn: Any = {
            "messages": [customer_message(text, wamid=f"wamid.{uuid.uuid4().hex}", kind="text")],
            "run_id": str(uuid.uuid4()),
            "replies": [],
        }
        context = ConversationContext(conversation_id=thread, wa_id=customer)
        await self.graph.ainvoke(turn, config, context=context)


@asynccontextmanager
async def bench_graph(
    db_url: str, agents: FakeOpenAIServer, writer: FakeOpenAIServer, *, memory: bool = True
) -> AsyncIterator[Bench]:
    """The production graph with the business tools; agents answer from `agents`,
    summaries and extraction come from `writer`."""
    settings = settings_for(db_url, agents)
    async with (
        open_pool(db_url, settings) as pool,
        open_memory(pool, db_url, settings, chat_model(writer)) as parts,
    ):
        model = chat_model(agents)
        tools = demo_business_tools(pool)
        graph = build_graph(
            model,
            load_prompts(settings.business_name),
            router=await build_router(settings, build_embeddings(settings), model),
            agents=load_default_agents(settings.business_name),
            tools=list(tools.values()),
            checkpointer=create_checkpointer(pool),
            memory=parts.nodes if memory else None,
        )
        yield Bench(graph, parts, pool)
