// The dashboard's behaviour: overview charts (Chart.js from node_modules) and the
// operator's buttons, which call the JSON admin API with the session cookie. Served
// from this origin only (CSP script-src 'self'); no inline script anywhere.
"use strict";

const DASHBOARD_HEADER = { "X-WA-Agent-Dashboard": "1" };

async function callApi(url, method, body) {
  const headers = { ...DASHBOARD_HEADER };
  if (body !== undefined) headers["Content-Type"] = "application/json";
  const answer = await fetch(url, {
    method,
    headers,
    credentials: "same-origin",
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  if (!answer.ok) {
    let detail = answer.statusText;
    try {
      const problem = await answer.json();
      detail = typeof problem.detail === "string" ? problem.detail : JSON.stringify(problem.detail);
    } catch (_) { /* not JSON */ }
    throw new Error(`${answer.status}: ${detail}`);
  }
  return answer.status === 204 ? null : answer.json();
}

function say(container, text, failed) {
  const slot = container.querySelector(".result");
  if (slot) {
    slot.textContent = text;
    slot.classList.toggle("error", Boolean(failed));
  }
}

// --- overview charts ----------------------------------------------------------------

const COLORS = ["#2563eb", "#dc2626", "#16a34a", "#d97706", "#7c3aed", "#0891b2"];

function lineChart(id, labels, datasets, extra) {
  const canvas = document.getElementById(id);
  if (!canvas) return null;
  return new window.Chart(canvas, {
    type: extra && extra.type ? extra.type : "line",
    data: {
      labels,
      datasets: datasets.map((d, i) => ({
        borderColor: COLORS[i % COLORS.length],
        backgroundColor: COLORS[i % COLORS.length],
        tension: 0.2,
        ...d,
      })),
    },
    options: { animation: false, responsive: true, maintainAspectRatio: false, ...(extra || {}).options },
  });
}

function drawOverview() {
  const block = document.getElementById("overview-data");
  if (!block || !window.Chart) return;
  const figures = JSON.parse(block.textContent);
  const days = figures.days.map((d) => d.day);
  const pick = (key) => figures.days.map((d) => d[key]);
  const percent = (key) => figures.days.map((d) => Math.round(d[key] * 1000) / 10);
  const charts = [
    lineChart("chart-conversations", days, [{ label: "conversations", data: pick("conversations") }], { type: "bar" }),
    lineChart("chart-cost", days, [{ label: "USD", data: pick("cost_usd") }]),
    // Stacked means (new and cached prompt tokens, completion) beside the p95 of all.
    lineChart("chart-tokens", days, [
      { label: "new prompt (mean)", data: pick("new_tokens_per_conversation_mean"), stack: "mean" },
      { label: "cached prompt (mean)", data: pick("cached_tokens_per_conversation_mean"), stack: "mean" },
      { label: "completion (mean)", data: pick("completion_tokens_per_conversation_mean"), stack: "mean" },
      { label: "all (p95)", data: pick("tokens_per_conversation_p95"), type: "line", stack: "p95" },
    ], { type: "bar", options: { scales: { x: { stacked: true }, y: { stacked: true } } } }),
    lineChart(
      "chart-latency",
      figures.agents.map((a) => a.agent || "—"),
      [{ label: "p95 ms", data: figures.agents.map((a) => a.latency_p95_ms) }],
      { type: "bar" },
    ),
    lineChart("chart-rates", days, [
      { label: "error rate %", data: percent("error_rate") },
      { label: "escalation rate %", data: percent("escalation_rate") },
    ]),
  ].filter(Boolean);
  document.body.dataset.chartsReady = String(charts.length);
}

// --- extra panels (other capabilities' figures, from their JSON routes) -------------

// A list renders as rows; an object (a set of figures) as one row per figure.
function panelRows(data) {
  if (Array.isArray(data)) return data;
  return Object.entries(data).map(([figure, value]) => ({ figure, value }));
}

function panelCell(value) {
  if (typeof value !== "object" || value === null) return String(value);
  return Object.entries(value)
    .map(([key, inner]) => `${key}: ${typeof inner === "object" && inner !== null ? JSON.stringify(inner) : inner}`)
    .join(" · ");
}

function renderPanel(body, data) {
  const rows = panelRows(data);
  if (!rows.length) { body.textContent = "Nothing yet."; return; }
  const table = document.createElement("table");
  const columns = Object.keys(rows[0]);
  const head = table.createTHead().insertRow();
  columns.forEach((c) => { head.insertCell().textContent = c; });
  const tbody = table.createTBody();
  rows.forEach((row) => {
    const tr = tbody.insertRow();
    columns.forEach((c) => {
      const value = row[c];
      tr.insertCell().textContent = panelCell(value);
    });
  });
  body.replaceChildren(table);
}

function loadPanels() {
  document.querySelectorAll(".panel[data-endpoint]").forEach(async (panel) => {
    const body = panel.querySelector(".panel-body");
    try {
      renderPanel(body, await callApi(panel.dataset.endpoint, "GET"));
    } catch (error) {
      body.textContent = `Could not load: ${error.message}`;
    }
  });
}

// --- operator actions: reply, hand back ---------------------------------------------

function wireOperators() {
  document.querySelectorAll(".operator").forEach((box) => {
    const form = box.querySelector("form.reply");
    form.addEventListener("submit", async (event) => {
      event.preventDefault();
      const text = form.elements.text.value.trim();
      if (!text) return;
      try {
        await callApi(form.dataset.url, "POST", { text });
        form.elements.text.value = "";
        say(box, "Sent.");
      } catch (error) {
        say(box, `Not sent (${error.message})`, true);
      }
    });
    box.querySelector("button.release").addEventListener("click", async (event) => {
      try {
        await callApi(event.target.dataset.url, "POST");
        say(box, "Handed back to the bot.");
        form.querySelector("button").disabled = true;
        event.target.disabled = true;
      } catch (error) {
        say(box, `Not handed back (${error.message})`, true);
      }
    });
  });
}

// --- takeover, canned replies, notes, assignee --------------------------------------

function wireTeam() {
  document.querySelectorAll("button.take-over").forEach((button) => {
    button.addEventListener("click", async () => {
      try {
        await callApi(button.dataset.url, "POST");
        window.location.reload();  // the page now shows the reply box
      } catch (error) {
        say(button.parentElement, `Not taken over (${error.message})`, true);
      }
    });
  });
  document.querySelectorAll("form.reply select[name=canned]").forEach((select) => {
    select.addEventListener("change", () => {
      if (select.value) select.form.elements.text.value = select.value;
    });
  });
  document.querySelectorAll("form.note").forEach((form) => {
    form.addEventListener("submit", async (event) => {
      event.preventDefault();
      const team = form.closest(".team");
      try {
        const note = await callApi(form.dataset.url, "POST", { text: form.elements.text.value });
        const item = document.createElement("li");
        item.textContent = `${note.author} · just now — ${note.text}`;
        team.querySelector("ol.notes").append(item);
        form.elements.text.value = "";
        say(team, "Note added.");
      } catch (error) {
        say(team, `Not added (${error.message})`, true);
      }
    });
  });
  document.querySelectorAll("form.assign").forEach((form) => {
    form.addEventListener("submit", async (event) => {
      event.preventDefault();
      const operator = form.elements.operator.value.trim() || null;
      try {
        await callApi(form.dataset.url, "PUT", { operator });
        say(form.closest(".team"), operator ? `Assigned to ${operator}.` : "Unassigned.");
      } catch (error) {
        say(form.closest(".team"), `Not assigned (${error.message})`, true);
      }
    });
  });
}

// --- agents and flags -------------------------------------------------------------

// Only what the operator changed is sent: saving a new model must not pin today's
// prompt file into the database, and the audit log should say what really changed.
function agentChanges(form) {
  const changes = {};
  const { system_prompt: prompt, model, tools, enabled } = form.elements;
  if (prompt.value !== prompt.defaultValue) changes.system_prompt = prompt.value;
  if (model.value.trim() !== model.defaultValue) changes.model = model.value.trim() || null;
  const options = Array.from(tools.options);
  if (options.some((o) => o.selected !== o.defaultSelected)) {
    changes.tools = options.filter((o) => o.selected).map((o) => o.value);
  }
  if (enabled.checked !== enabled.defaultChecked) changes.enabled = enabled.checked;
  return changes;
}

// What was saved becomes the new "unchanged" state of the form.
function markSaved(form) {
  Array.from(form.elements).forEach((element) => {
    if (element.type === "checkbox") element.defaultChecked = element.checked;
    else if (element.tagName === "SELECT") {
      Array.from(element.options).forEach((o) => { o.defaultSelected = o.selected; });
    } else if ("defaultValue" in element) element.defaultValue = element.value;
  });
}

function wireForms() {
  document.querySelectorAll("form.agent, form.flag").forEach((form) => {
    form.addEventListener("submit", async (event) => {
      event.preventDefault();
      const body = form.classList.contains("agent")
        ? agentChanges(form)
        : { enabled: form.elements.enabled.checked, rollout_percent: Number(form.elements.rollout_percent.value) };
      if (Object.keys(body).length === 0) {
        say(form, "Nothing changed.");
        return;
      }
      try {
        await callApi(form.dataset.url, form.dataset.method, body);
        markSaved(form);
        say(form, "Saved.");
      } catch (error) {
        say(form, `Not saved (${error.message})`, true);
      }
    });
  });
}

document.addEventListener("DOMContentLoaded", () => {
  drawOverview();
  loadPanels();
  wireOperators();
  wireTeam();
  wireForms();
});
