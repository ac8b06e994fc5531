-- The operator console: turn events for the routing and escalation figures, and the
-- indexes its time-window queries (server/console/aggregates.py) need.

-- What a turn decided, as the accounting callback saw it: the router's choice (intent,
-- method, confidence), each handoff between agents, each escalation to a person.
-- Written in batches off the hot path (server/accounting.py), like agent_metrics.
CREATE TABLE agent_turn_events (
    id               bigserial PRIMARY KEY,
    conversation_id  uuid,
    run_id           uuid,
    kind             text NOT NULL CHECK (kind IN ('route', 'handoff', 'escalation')),
    agent            text,          -- route: the intent chosen; handoff: the agent handed to
    source           text,          -- handoff: the agent handing over
    method           text,          -- route: rule | embedding | llm | sticky | default
    confidence       real,
    created_at       timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX agent_turn_events_created ON agent_turn_events (created_at);
CREATE INDEX agent_turn_events_run ON agent_turn_events (run_id);
CREATE INDEX agent_turn_events_conversation ON agent_turn_events (conversation_id);

CREATE INDEX agent_metrics_run ON agent_metrics (run_id);
CREATE INDEX agent_tool_executions_created ON agent_tool_executions (created_at);
CREATE INDEX conversation_runs_started ON conversation_runs (started_at);

-- Alerts currently firing (active) or last resolved, one row per condition: what keeps
-- a condition from being announced again at every evaluation while it holds, across
-- workers and restarts.
CREATE TABLE console_alerts (
    key          text PRIMARY KEY,          -- error_rate, latency_p95:booking, ...
    active       boolean NOT NULL,
    value        double precision,
    threshold    double precision,
    fired_at     timestamptz NOT NULL,
    resolved_at  timestamptz,
    updated_at   timestamptz NOT NULL DEFAULT now()
);

-- Rollups: what the console's figures are read from, kept current by the triggers
-- below in the same transaction as the rows they summarise, so a two-week overview
-- reads thousands of rollup rows instead of hundreds of thousands of raw ones. Days
-- are UTC days.

-- One row per conversation and day: its turns, model usage, the specialist that called
-- the model last (the latest agent_metrics id wins), and whether it was escalated.
CREATE TABLE console_conversation_days (
    day                date NOT NULL,
    conversation_id    uuid NOT NULL,
    turns              integer NOT NULL DEFAULT 0,
    calls              integer NOT NULL DEFAULT 0,
    errors             integer NOT NULL DEFAULT 0,
    prompt_tokens      bigint NOT NULL DEFAULT 0,
    completion_tokens  bigint NOT NULL DEFAULT 0,
    cached_tokens      bigint NOT NULL DEFAULT 0,
    cost_usd           numeric(16, 8) NOT NULL DEFAULT 0,
    last_agent         text,
    last_agent_call    bigint,
    escalated          boolean NOT NULL DEFAULT false,
    PRIMARY KEY (day, conversation_id)
);
CREATE INDEX console_conversation_days_conversation ON console_conversation_days (conversation_id);

-- Model calls per day, agent and latency bucket (5 % wide: bucket b holds latencies in
-- [1.05^b, 1.05^(b+1)) ms), so latency percentiles are read from a histogram.
CREATE TABLE console_agent_latency (
    day        date NOT NULL,
    agent      text NOT NULL,               -- '' for calls outside any agent
    bucket     smallint NOT NULL,
    calls      integer NOT NULL,
    errors     integer NOT NULL,
    tokens     bigint NOT NULL,
    cost_usd   numeric(16, 8) NOT NULL,
    PRIMARY KEY (day, agent, bucket)
);

-- The router's decisions per day, intent and method.
CREATE TABLE console_route_days (
    day             date NOT NULL,
    intent          text NOT NULL,
    method          text NOT NULL,
    decisions       integer NOT NULL,
    confidence_sum  double precision NOT NULL,
    PRIMARY KEY (day, intent, method)
);

CREATE FUNCTION console_latency_bucket(latency_ms real) RETURNS smallint
LANGUAGE sql IMMUTABLE AS $$
    SELECT floor(ln(greatest(coalesce(latency_ms, 1), 1)) / ln(1.05))::smallint
$$;

CREATE FUNCTION console_roll_up_calls() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    sign integer := CASE WHEN TG_OP = 'DELETE' THEN -1 ELSE 1 END;
BEGIN
    IF TG_OP = 'INSERT' THEN
        INSERT INTO console_conversation_days AS d (day, conversation_id, calls, errors,
            prompt_tokens, completion_tokens, cached_tokens, cost_usd, last_agent,
            last_agent_call)
        SELECT (created_at AT TIME ZONE 'UTC')::date, conversation_id, count(*),
               count(*) FILTER (WHERE NOT success), sum(prompt_tokens), sum(completion_tokens),
               sum(cached_tokens), sum(cost_usd),
               (array_agg(agent ORDER BY id DESC) FILTER (WHERE node LIKE 'agent\_%'))[1],
               max(id) FILTER (WHERE node LIKE 'agent\_%')
        FROM changed_calls WHERE conversation_id IS NOT NULL
        GROUP BY 1, 2
        ON CONFLICT (day, conversation_id) DO UPDATE SET
            calls = d.calls + EXCLUDED.calls,
            errors = d.errors + EXCLUDED.errors,
            prompt_tokens = d.prompt_tokens + EXCLUDED.prompt_tokens,
            completion_tokens = d.completion_tokens + EXCLUDED.completion_tokens,
            cached_tokens = d.cached_tokens + EXCLUDED.cached_tokens,
            cost_usd = d.cost_usd + EXCLUDED.cost_usd,
            last_agent = CASE WHEN EXCLUDED.last_agent_call > coalesce(d.last_agent_call, 0)
                              THEN EXCLUDED.last_agent ELSE d.last_agent END,
            last_agent_call = greatest(d.last_agent_call, EXCLUDED.last_agent_call);
    END IF;
    INSERT INTO console_agent_latency AS l (day, agent, bucket, calls, errors, tokens, cost_usd)
    SELECT (created_at AT TIME ZONE 'UTC')::date, coalesce(agent, ''),
           console_latency_bucket(latency_ms), sign * count(*),
           sign * count(*) FILTER (WHERE NOT success),
           sign * sum(prompt_tokens + completion_tokens), sign * sum(cost_usd)
    FROM changed_calls GROUP BY 1, 2, 3
    ON CONFLICT (day, agent, bucket) DO UPDATE SET
        calls = l.calls + EXCLUDED.calls, errors = l.errors + EXCLUDED.errors,
        tokens = l.tokens + EXCLUDED.tokens, cost_usd = l.cost_usd + EXCLUDED.cost_usd;
    RETURN NULL;
END;
$$;
CREATE TRIGGER agent_metrics_roll_up_insert AFTER INSERT ON agent_metrics
    REFERENCING NEW TABLE AS changed_calls
    FOR EACH STATEMENT EXECUTE FUNCTION console_roll_up_calls();
CREATE TRIGGER agent_metrics_roll_up_delete AFTER DELETE ON agent_metrics
    REFERENCING OLD TABLE AS changed_calls
    FOR EACH STATEMENT EXECUTE FUNCTION console_roll_up_calls();

CREATE FUNCTION console_roll_up_runs() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO console_conversation_days AS d (day, conversation_id, turns)
    SELECT (started_at AT TIME ZONE 'UTC')::date, conversation_id, count(*)
    FROM new_runs GROUP BY 1, 2
    ON CONFLICT (day, conversation_id) DO UPDATE SET turns = d.turns + EXCLUDED.turns;
    RETURN NULL;
END;
$$;
CREATE TRIGGER conversation_runs_roll_up AFTER INSERT ON conversation_runs
    REFERENCING NEW TABLE AS new_runs
    FOR EACH STATEMENT EXECUTE FUNCTION console_roll_up_runs();

CREATE FUNCTION console_roll_up_events() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    sign integer := CASE WHEN TG_OP = 'DELETE' THEN -1 ELSE 1 END;
BEGIN
    IF TG_OP = 'INSERT' THEN
        INSERT INTO console_conversation_days AS d (day, conversation_id, escalated)
        SELECT DISTINCT (created_at AT TIME ZONE 'UTC')::date, conversation_id, true
        FROM changed_events WHERE kind = 'escalation' AND conversation_id IS NOT NULL
        ON CONFLICT (day, conversation_id) DO UPDATE SET escalated = true;
    END IF;
    INSERT INTO console_route_days AS r (day, intent, method, decisions, confidence_sum)
    SELECT (created_at AT TIME ZONE 'UTC')::date, coalesce(agent, ''), coalesce(method, ''),
           sign * count(*), sign * coalesce(sum(confidence), 0)
    FROM changed_events WHERE kind = 'route' GROUP BY 1, 2, 3
    ON CONFLICT (day, intent, method) DO UPDATE SET
        decisions = r.decisions + EXCLUDED.decisions,
        confidence_sum = r.confidence_sum + EXCLUDED.confidence_sum;
    RETURN NULL;
END;
$$;
CREATE TRIGGER agent_turn_events_roll_up_insert AFTER INSERT ON agent_turn_events
    REFERENCING NEW TABLE AS changed_events
    FOR EACH STATEMENT EXECUTE FUNCTION console_roll_up_events();
CREATE TRIGGER agent_turn_events_roll_up_delete AFTER DELETE ON agent_turn_events
    REFERENCING OLD TABLE AS changed_events
    FOR EACH STATEMENT EXECUTE FUNCTION console_roll_up_events();
