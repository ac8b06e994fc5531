"""The dashboard in a real browser (Playwright driving Debian's Chromium, headless):
log in with the token, see the overview charts drawn, open a conversation, answer an
escalated conversation from the inbox and see the reply reach the (fake) Graph API,
then hand it back to the bot; take a conversation over from the bot, answer it with a
canned reply, leave a note and assign it."""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import AsyncIterator
from typing import Any

import pytest
from playwright.async_api import Browser, Page, async_playwright, expect

from server.http.dashboard import pages as dashboard
from server.http.dashboard.pages import Panel
from tests.fakes.graph_api import FakeGraphAPI
from tests.fakes.meta_payloads import envelope, text_message
from tests.fakes.openai_server import FakeOpenAIServer
from tests.support import RunningService, eventually, running_service, service_settings

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
]
TOKEN = "dashboard-test-token-0123456789abcdef"


@pytest.fixture(scope="module")
async def browser() -> AsyncIterator[Browser]:
    async with async_playwright() as playwright:
        launched = await playwright.chromium.launch(
            executable_path=CHROMIUM, args=CHROMIUM_FLAGS, headless=True
        )
        yield launched
        await launched.close()


def settings(db_url: str, graph_api: FakeGraphAPI, openai: FakeOpenAIServer) -> Any:
    return service_settings(
        db_url,
        whatsapp_api_base_url=graph_api.base_url,
        openai_api_key="sk-test",
        openai_base_url=openai.base_url + "/v1",
        admin_token=TOKEN,
    )


async def say(service: RunningService, customer: str, text: str, name: str) -> None:
    rows = await service.fetch("SELECT count(*) AS n FROM conversation_runs WHERE status='done'")
    before = int(rows[0]["n"])
    message = text_message(customer, text, name=name)
    assert (await service.post_webhook(envelope(message))).status_code == 200

    async def finished() -> bool:
        done = await service.fetch(
            "SELECT count(*) AS n FROM conversation_runs WHERE status='done'"
        )
        return int(done[0]["n"]) > before

    await eventually(finished, within=20, what="the turn to finish")
    assert service.services.accounting is not None
    await service.services.accounting.writer.flush()


@contextlib.asynccontextmanager
async def extra_panels(panels: list[Panel]) -> AsyncIterator[None]:
    dashboard.EXTRA_PANELS.extend(panels)
    try:
        yield
    finally:
        del dashboard.EXTRA_PANELS[-len(panels) :]


async def log_in(page: Page, base_url: str, token: str) -> None:
    await page.goto(base_url + "/admin")
    await expect(page).to_have_url(base_url + "/admin/login")
    await page.fill("#token", token)
    await page.click("button[type=submit]")


async def test_operator_logs_in_reads_the_overview_and_answers_from_the_inbox(
    db_url: str, graph_api: FakeGraphAPI, openai_server: FakeOpenAIServer, browser: Browser
) -> None:
    customer = "2507" + str(uuid.uuid4().int)[:8]
    panels = [Panel("Routing, as a panel", "/admin/api/console/routing")]
    async with (
        running_service(settings(db_url, graph_api, openai_server)) as service,
        extra_panels(panels),
    ):
        openai_server.script("Sure, which day would you like the bike?")
        await say(service, customer, "I want to book a bike for Saturday", "Josiane")
        await say(service, customer, "this is wrong, I want a person", "Josiane")

        page = await browser.new_page()
        await log_in(page, service.base_url, "not-the-token")
        await expect(page.get_by_role("alert")).to_contain_text("not valid")
        await log_in(page, service.base_url, TOKEN)
        await expect(page).to_have_url(service.base_url + "/admin")

        # Overview: five charts drawn by Chart.js, today's figures in the tiles.
        await expect(page.locator("body")).to_have_attribute("data-charts-ready", "5")
        for chart in ("conversations", "cost", "tokens", "latency", "rates"):
            drawn = await page.evaluate(
                "id => window.Chart.getChart(document.getElementById(id)) !== undefined",
                f"chart-{chart}",
            )
            assert drawn, chart
        await expect(page.locator("#kpi-escalations")).to_have_text("1")
        # Tokens per conversation, prompt tokens split into new and cached.
        await expect(page.locator("#kpi-tokens-per-conversation")).to_contain_text(" cached")
        costs = page.locator("#conversation-costs")
        await expect(costs).to_contain_text("Josiane")
        await expect(costs.locator("thead")).to_contain_text("New prompt tokens")
        # Another capability's panel (here: the routing route) is filled from its JSON.
        panel = page.locator("section.panel", has_text="Routing, as a panel")
        await expect(panel.locator("table")).to_contain_text("booking")
        # Business outcomes, written for people: tiles, how episodes ended, the targets.
        outcomes = page.locator("section#outcomes")
        await expect(outcomes.locator(".kpis")).to_contain_text("Resolved by the bot")
        await expect(outcomes.locator(".kpis")).to_contain_text("Satisfaction (1–5)")
        ended = outcomes.locator("#outcome-breakdown")
        await expect(ended).to_contain_text("Abandoned")
        assert await ended.locator("progress").count() == 4
        await expect(outcomes.locator("#outcome-targets")).to_contain_text("resolution rate")
        assert "{" not in await outcomes.inner_text()  # no JSON for people to decode

        # Conversations: found by the last digits of the number, transcript with agents.
        await page.click("text=Conversations")
        await page.fill("input[name=q]", customer[-4:])
        await page.click("form.search button")
        await page.click("text=Josiane")
        await expect(page.locator("#conversation-usage")).to_contain_text("model calls")
        await expect(page.locator("#conversation-usage")).to_contain_text("cached")
        timeline = page.locator("ol.timeline")
        await expect(timeline).to_contain_text("agent · booking")
        await expect(timeline).to_contain_text("Sure, which day would you like the bike?")
        await expect(timeline).to_contain_text("routed to booking")
        await expect(timeline).to_contain_text("escalated to a person")

        # Inbox: answer the customer, then hand the conversation back to the bot.
        await page.click("text=Inbox")
        thread = page.locator("article.thread", has_text="Josiane")
        await thread.locator("textarea").fill("Hi Josiane, Eric here. Saturday 9am is yours.")
        await thread.locator("form.reply button").click()
        await expect(thread.locator(".result")).to_have_text("Sent.")

        async def reply_delivered() -> bool:
            return "Hi Josiane, Eric here. Saturday 9am is yours." in graph_api.texts_to(customer)

        await eventually(reply_delivered, within=20, what="the operator's reply at the Graph API")
        await thread.locator("button.release").click()
        await expect(thread.locator(".result")).to_have_text("Handed back to the bot.")

        async def handed_back() -> bool:
            rows = await service.fetch(
                "SELECT status FROM agent_conversations WHERE wa_id = %s", customer
            )
            return rows[0]["status"] == "active"

        await eventually(handed_back, within=20, what="the conversation back with the bot")
        await page.close()


async def test_operator_edits_an_agent_and_rolls_out_a_flag(
    db_url: str, graph_api: FakeGraphAPI, openai_server: FakeOpenAIServer, browser: Browser
) -> None:
    async with running_service(settings(db_url, graph_api, openai_server)) as service:
        page = await browser.new_page()
        await log_in(page, service.base_url, TOKEN)
        await page.click("text=Agents & flags")
        sales = page.locator("form.agent[data-url$='/agents/sales']")
        await sales.locator("input[name=model]").fill("openai:gpt-4.1-nano")
        await sales.locator("button[type=submit]").click()
        await expect(sales.locator(".result")).to_have_text("Saved.")
        flag = page.locator("form.flag[data-url$='/spending_caps']")
        await flag.locator("input[name=rollout_percent]").fill("25")
        await flag.locator("button[type=submit]").click()
        await expect(flag.locator(".result")).to_have_text("Saved.")
        await page.close()
        agent = await service.fetch("SELECT model FROM agent_configurations WHERE name = 'sales'")
        rollout = await service.fetch(
            "SELECT rollout_percent FROM feature_flags WHERE name = 'spending_caps'"
        )
        audit = await service.fetch(
            "SELECT actor, action, target, details FROM audit_log"
            " WHERE action IN ('agent.update', 'flag.update') ORDER BY id"
        )
    assert agent[0]["model"] == "openai:gpt-4.1-nano"
    assert rollout[0]["rollout_percent"] == 25
    assert [(a["actor"], a["action"], a["target"]) for a in audit] == [
        ("admin", "agent.update", "sales"),
        ("admin", "flag.update", "spending_caps"),
    ]
    assert audit[0]["details"] == {"model": "openai:gpt-4.1-nano"}  # only what changed


async def test_operator_takes_over_notes_assigns_and_answers_with_a_canned_reply(
    db_url: str, graph_api: FakeGraphAPI, openai_server: FakeOpenAIServer, browser: Browser
) -> None:
    customer = "2507" + str(uuid.uuid4().int)[:8]
    canned = "Thanks for waiting! A mechanic will look at your bike today."
    async with running_service(settings(db_url, graph_api, openai_server)) as service:
        openai_server.script("Hello! How can I help?")
        await say(service, customer, "my brakes squeak", "Aline")
        await service.execute(
            "INSERT INTO canned_replies (name, text, updated_by) VALUES ('mechanic', %s, 'admin')",
            canned,
        )
        [conversation] = await service.fetch(
            "SELECT id::text AS id FROM agent_conversations WHERE wa_id = %s", customer
        )
        page = await browser.new_page()
        await log_in(page, service.base_url, TOKEN)
        await page.goto(f"{service.base_url}/admin/conversations/{conversation['id']}")
        await page.wait_for_load_state("domcontentloaded")

        async with page.expect_navigation(wait_until="domcontentloaded"):
            await page.click("button.take-over")  # the page reloads, now with a reply box
        operator = page.locator(".operator")
        await expect(operator.locator("form.reply")).to_be_visible()  # reloaded, now ours
        await operator.locator("select[name=canned]").select_option(label="mechanic")
        await expect(operator.locator("textarea")).to_have_value(canned)
        await operator.locator("form.reply button").click()
        await expect(operator.locator(".result")).to_have_text("Sent.")

        async def delivered() -> bool:
            return canned in graph_api.texts_to(customer)

        await eventually(delivered, within=20, what="the canned reply at the Graph API")

        team = page.locator("section.team")
        sent = len(graph_api.sent_to(customer))
        await team.locator("form.note textarea").fill(
            "Rear brake pads worn; offered a repair slot."
        )
        await team.locator("form.note button").click()
        await expect(team.locator(".result")).to_have_text("Note added.")
        await expect(team.locator("ol.notes")).to_contain_text("Rear brake pads worn")
        await team.locator("input[name=operator]").fill("eric")
        await team.locator("form.assign button").click()
        await expect(team.locator(".result")).to_have_text("Assigned to eric.")
        await page.reload(wait_until="domcontentloaded")
        await expect(team.locator("ol.notes")).to_contain_text("admin")
        await expect(team.locator("input[name=operator]")).to_have_value("eric")
        await page.close()
        assert len(graph_api.sent_to(customer)) == sent  # the note stayed with the team
        rows = await service.fetch(
            "SELECT status, assigned_to FROM agent_conversations WHERE id = %s", conversation["id"]
        )
        assert (rows[0]["status"], rows[0]["assigned_to"]) == ("escalated", "eric")
