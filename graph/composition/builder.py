"""`build_graph`: the conversation state machine, in one readable place.

    START ─▶ begin_turn ─┬─▶ unsupported (only message kinds the bot cannot read)
                         ├─▶ menu ⇄ menu_tools (no model, or `ai_agent` off: taps)
                         ├─▶ goodbye (only thanks after an answer: no model)
                         ├─▶ recall_memories, summarize (beside the router, in its step)
                         └─▶ router ─┬─▶ agent_<name> ⇄ tools
                                     └─▶ escalate ─▶ human_takeover
    tools ─▶ receipt (a confirmed action's outcome: no model)
    every branch ends at END

`recall_memories` puts what the business remembers about the customer in the state for
the agents' system prompt; `summarize` folds the oldest messages into a running summary
when the history is over its token budget (both only with `memory`, see nodes/memory).
They run in the router's step, not before it: the router reads only the newest messages,
and the agent, one step later, reads what all three wrote — a turn saves two steps and
waits for the slowest of the three rather than their sum.
Agents are specialists; handoffs change who is in charge; `human_takeover` interrupts
until an operator releases the conversation.

The tool node belongs to no agent: after it, the turn goes back to whoever is in charge
now, which is how a `transfer_to_<agent>` call hands over without running two agents.

The routing functions are coroutines although none of them waits: LangGraph runs a plain
function on a thread pool when the graph runs asynchronously, and a turn would hop
threads (and wait for the GIL behind the event loop) at every branch for a dict lookup.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Literal

from langchain_core.language_models import BaseChatModel
from langchain_core.messages import AIMessage, HumanMessage
from langchain_core.tools import BaseTool
from langgraph.checkpoint.base import BaseCheckpointSaver
from langgraph.graph import END, START, StateGraph
from langgraph.graph.state import CompiledStateGraph
from langgraph.prebuilt import ToolNode
from langgraph.prebuilt.tool_node import AsyncToolCallWrapper
from langgraph.runtime import Runtime

from graph.composition.prompts import Prompts
from graph.context import AgentConfig, ConversationContext
from graph.state import ConversationState, latest_customer_messages, whatsapp_meta
from nodes.answer_cache import AnswerCache, with_answer_cache
from nodes.dispatch import DecidesRoute, customer_turn_text, make_router_node
from nodes.escalation import human_takeover, make_escalate_node
from nodes.fallback import make_unsupported_node
from nodes.goodbye import ends_conversation, make_goodbye_node
from nodes.handoffs import (
    HUMAN,
    MAX_HANDOFFS_PER_TURN,
    make_escalation_tool,
    make_handoff_tool,
)
from nodes.intents import RequestReader
from nodes.memory import HistoryBudget, MemoryNodes, add_memory_nodes
from nodes.menu import after_menu, make_menu_node
from nodes.receipts import make_receipt_node, receipts_of_last_tools
from nodes.specialists import ChatModelFor, agent_node_name, make_specialist_node
from tools.listings import Listings

ConversationGraph = CompiledStateGraph[
    ConversationState, ConversationContext, ConversationState, ConversationState
]


def build_graph(
    model: BaseChatModel | None,
    prompts: Prompts,
    *,
    router: DecidesRoute | None = None,
    menu_reader: RequestReader | None = None,
    agents: Mapping[str, AgentConfig] | None = None,
    tools: Sequence[BaseTool] = (),
    chat_model_for: ChatModelFor | None = None,
    checkpointer: BaseCheckpointSaver[str] | None = None,
    memory: MemoryNodes | None = None,
    listings: Listings | None = None,
    tool_wrapper: AsyncToolCallWrapper | None = None,
    answer_cache: AnswerCache | None = None,
) -> ConversationGraph:
    """Compile the graph; `checkpointer=None` for LangGraph Studio, which brings its own.

    Without a model there are no agents: every turn gets the rule-based menu, which
    reaches the business tools through taps when `listings` is given. Without `memory`
    the agents read the whole thread and recall nothing. `tool_wrapper` sees every tool
    call (the registry's limits, timeout and records: tools/registry.py).
    """
    builder = StateGraph(ConversationState, context_schema=ConversationContext)
    _add_menu(builder, prompts, tools, listings, tool_wrapper, menu_reader)
    builder.add_node("unsupported", make_unsupported_node(prompts.fallback))
    builder.add_edge("unsupported", END)
    language_of = menu_reader.language_of if menu_reader is not None else None
    builder.add_node("escalate", make_escalate_node(prompts.notices, language_of))
    builder.add_node("human_takeover", human_takeover)
    builder.add_edge("escalate", "human_takeover")
    builder.add_edge("human_takeover", END)
    if model is None or router is None or not agents:
        builder.add_conditional_edges(START, _begin_with_menu, ["unsupported", "menu", "escalate"])
        return builder.compile(checkpointer=checkpointer, name="wa-agent")

    history = memory.budget if memory is not None else None
    _add_agents(
        builder,
        model,
        prompts,
        router,
        agents,
        tools,
        chat_model_for,
        history,
        tool_wrapper,
        answer_cache=answer_cache,
    )
    builder.add_node("goodbye", make_goodbye_node(prompts.notices, language_of))
    builder.add_edge("goodbye", END)
    builder.add_node("receipt", make_receipt_node(prompts.notices, language_of))
    builder.add_edge("receipt", END)
    _add_turn_start(builder, add_memory_nodes(builder, memory) if memory else [])
    return builder.compile(checkpointer=checkpointer, name="wa-agent")


def _add_turn_start(
    builder: StateGraph[
        ConversationState, ConversationContext, ConversationState, ConversationState
    ],
    beside_router: Sequence[str],
) -> None:
    """Where a turn with agents starts; `beside_router`: nodes run in the router's step."""

    async def begin_turn(
        state: ConversationState, runtime: Runtime[ConversationContext]
    ) -> list[str]:
        start = _turn_start(state, runtime)
        return [*beside_router, "router"] if start == "router" else [start]

    destinations = ["unsupported", "menu", "escalate", "goodbye", "router", *beside_router]
    builder.add_conditional_edges(START, begin_turn, destinations)


def _add_agents(
    builder: StateGraph[
        ConversationState, ConversationContext, ConversationState, ConversationState
    ],
    model: BaseChatModel,
    prompts: Prompts,
    router: DecidesRoute,
    agents: Mapping[str, AgentConfig],
    tools: Sequence[BaseTool],
    chat_model_for: ChatModelFor | None,
    history: HistoryBudget | None,
    tool_wrapper: AsyncToolCallWrapper | None,
    answer_cache: AnswerCache | None = None,
) -> None:
    handoffs = [make_handoff_tool(a.name, a.description) for a in agents.values()]
    every_tool = {t.name: t for t in [*tools, *handoffs, make_escalation_tool()]}
    agent_nodes = [agent_node_name(name) for name in agents]

    def agent_in_charge(state: ConversationState) -> str:
        agent = state.get("active_agent") or "customer_service"
        if agent == HUMAN or len(state.get("handoffs", [])) > MAX_HANDOFFS_PER_TURN:
            return "escalate"
        return agent_node_name(agent if agent in agents else "customer_service")

    builder.add_node("router", make_router_node(router, agents))

    async def to_agent_in_charge(state: ConversationState) -> str:
        return agent_in_charge(state)

    builder.add_conditional_edges("router", to_agent_in_charge, [*agent_nodes, "escalate"])
    for name in agents:
        node = make_specialist_node(
            name,
            defaults=agents,
            chat_model_for=chat_model_for or (lambda _config: model),
            tools=every_tool,
            common_prompt=prompts.assistant,
            fallback=prompts.fallback,
            history=history,
        )
        if answer_cache is not None:  # see nodes/answer_cache/node.py
            node = with_answer_cache(node, name, answer_cache, agents)
        builder.add_node(agent_node_name(name), node)
        builder.add_conditional_edges(agent_node_name(name), _after_agent, ["tools", "menu", END])
    tool_node = ToolNode(
        list(every_tool.values()), handle_tool_errors=True, awrap_tool_call=tool_wrapper
    )
    builder.add_node("tools", tool_node)

    async def after_tools(state: ConversationState) -> str:
        """A confirmed action's receipt goes out as it is; else back to the agent."""
        return "receipt" if receipts_of_last_tools(state["messages"]) else agent_in_charge(state)

    builder.add_conditional_edges("tools", after_tools, [*agent_nodes, "escalate", "receipt"])


def _add_menu(
    builder: StateGraph[
        ConversationState, ConversationContext, ConversationState, ConversationState
    ],
    prompts: Prompts,
    tools: Sequence[BaseTool],
    listings: Listings | None,
    tool_wrapper: AsyncToolCallWrapper | None,
    reader: RequestReader | None,
) -> None:
    """The menu and the tool node it hands its actions to (the agents' own tools).
    `reader`: what turns typed words into the action a tap would (nodes/intents)."""
    by_name = {tool.name: tool for tool in tools} if listings is not None else {}
    menu = make_menu_node(prompts.fallback, listings, by_name, reader=reader)
    builder.add_node("menu", menu, destinations=("escalate",))
    if not by_name:
        builder.add_edge("menu", END)
        return
    menu_tools = ToolNode(
        list(by_name.values()), handle_tool_errors=True, awrap_tool_call=tool_wrapper
    )
    builder.add_node("menu_tools", menu_tools)
    builder.add_conditional_edges("menu", after_menu, ["menu_tools", END])
    builder.add_edge("menu_tools", "menu")


MenuStart = Literal["unsupported", "menu", "escalate"]
TurnStart = Literal["unsupported", "menu", "escalate", "goodbye", "router"]


async def _begin_with_menu(state: ConversationState) -> MenuStart:
    return _menu_start(state)


def _menu_start(state: ConversationState) -> MenuStart:
    """No agents: taps and the menu answer; its "talk to a person" row reaches a person."""
    if _only_unreadable(state):
        return "unsupported"
    _, tapped = customer_turn_text(state)
    return "escalate" if tapped == f"menu:{HUMAN}" else "menu"


def _turn_start(state: ConversationState, runtime: Runtime[ConversationContext]) -> TurnStart:
    """With the `ai_agent` flag off for this customer the rule-based menu answers; its
    "talk to a person" row still reaches a person. Thanks after an answer need no agent."""
    if _only_unreadable(state):
        return "unsupported"
    if runtime.context is not None and not runtime.context.flag("ai_agent"):
        return _menu_start(state)
    return "goodbye" if ends_conversation(state) else "router"


def _only_unreadable(state: ConversationState) -> bool:
    turn = latest_customer_messages(state["messages"])
    return bool(turn) and not any(whatsapp_meta(m).get("supported", True) for m in turn)


async def _after_agent(state: ConversationState) -> Literal["menu", "tools", "__end__"]:
    """An agent that said nothing to the customer's message (its model is down) leaves
    the turn to the menu, which acts on typed words without a model."""
    last = state["messages"][-1]
    if isinstance(last, HumanMessage):
        return "menu"
    return "tools" if isinstance(last, AIMessage) and last.tool_calls else "__end__"
