// OpenAI-API conformance cases, run through the official `openai` Node client (pinned in package.json).
// `node conformance.mjs CASE...`; reads BASE_URL (…/v1), API_KEY and MODEL from the environment and
// prints one JSON object per case: what the client returned or raised (class name, HTTP status).
// The twin of conformance.py, case for case; the assertions live in tests/e2e/test_clients.py.
import OpenAI from 'openai';
import { VERSION } from 'openai/version';

const { BASE_URL, API_KEY, MODEL } = process.env;
const RETRIES = Number(process.env.MAX_RETRIES ?? '0');
const TIMEOUT_MS = Number(process.env.TIMEOUT_S ?? '120') * 1000;
const MSG = [{ role: 'user', content: 'Say something.' }];
// The served model (Qwen3's template and reasoning parser) thinks by default: its text is then in
// `reasoning_content`. Cases that compare text turn thinking off, as an application would.
const NO_THINKING = { chat_template_kwargs: { enable_thinking: false } };
let attempts = 0; // HTTP requests the client sent (its retries included)

const counting = (url, init) => {
  attempts += 1;
  return fetch(url, init);
};
const client = (apiKey = API_KEY, opts = {}) =>
  new OpenAI({ baseURL: BASE_URL, apiKey, maxRetries: RETRIES, timeout: TIMEOUT_MS, fetch: counting, ...opts });
const chat = (c, body) => c.chat.completions.create({ model: MODEL, messages: MSG, ...body });

async function streamUsage(c) {
  let chunks = 0, text = '', usage = null, finish = null;
  const stream = await chat(c, { max_tokens: 8, stream: true, stream_options: { include_usage: true } });
  for await (const ev of stream) {
    chunks += 1;
    if (ev.usage) {
      usage = { at_chunk: chunks, choices: ev.choices.length, prompt_tokens: ev.usage.prompt_tokens, completion_tokens: ev.usage.completion_tokens };
    }
    for (const ch of ev.choices) {
      text += ch.delta?.content ?? '';
      finish = ch.finish_reason ?? finish;
    }
  }
  return { chunks, text, usage, finish_reason: finish };
}

async function models(c) {
  const ids = [];
  for await (const m of c.models.list()) ids.push(m.id);
  return { ids: ids.sort() };
}

// The slow pair serves 1024 tokens; LONG_TOKENS: a shorter long answer, where a test needs only seconds.
const LONG = { max_tokens: Number(process.env.LONG_TOKENS ?? '900'), ignore_eos: true };

const SCHEMA = {
  type: 'object', properties: { answer: { type: 'string', enum: ['yes', 'no'] } },
  required: ['answer'], additionalProperties: false,
};

const cases = {
  models,
  async chat(c) {
    const r = await chat(c, { max_tokens: 8 });
    const ch = r.choices[0];
    return { object: r.object, content: ch.message.content, role: ch.message.role,
      reasoning_content: ch.message.reasoning_content ?? null, finish_reason: ch.finish_reason, completion_tokens: r.usage.completion_tokens };
  },
  stream_usage: streamUsage,
  async completions(c) {
    const r = await c.completions.create({ model: MODEL, prompt: 'Once upon a time', max_tokens: 6 });
    return { object: r.object, text: r.choices[0].text, completion_tokens: r.usage.completion_tokens };
  },
  async max_tokens(c) {
    const r = await chat(c, { max_tokens: 5, temperature: 0 });
    return { finish_reason: r.choices[0].finish_reason, completion_tokens: r.usage.completion_tokens };
  },
  async stop(c) {
    // Greedy output is reproducible: stop on a piece of it and the answer ends right before it.
    const full = (await chat(c, { max_tokens: 24, temperature: 0, ...NO_THINKING })).choices[0].message.content;
    let i = 2;
    while (full.slice(i, i + 3).includes('\ufffd')) i += 1;
    const stop = full.slice(i, i + 3);
    const r = await chat(c, { max_tokens: 24, temperature: 0, stop: [stop], ...NO_THINKING });
    return { full, stop, content: r.choices[0].message.content, finish_reason: r.choices[0].finish_reason };
  },
  async n(c) {
    const r = await chat(c, { max_tokens: 6, temperature: 1.0, n: 3 });
    return { indexes: r.choices.map((ch) => ch.index).sort() };
  },
  async seed(c) {
    const out = [];
    for (const seed of [7, 7, 8]) out.push((await chat(c, { max_tokens: 12, temperature: 1.0, seed, ...NO_THINKING })).choices[0].message.content);
    return { same: out[0] === out[1], other: out[0] !== out[2], sample: out[0] };
  },
  async json_object(c) {
    const r = await chat(c, { max_tokens: 120, response_format: { type: 'json_object' }, ...NO_THINKING,
      messages: [{ role: 'user', content: 'Answer in JSON.' }] });
    return { content: r.choices[0].message.content, finish_reason: r.choices[0].finish_reason };
  },
  async json_schema(c) {
    const r = await chat(c, { max_tokens: 60, ...NO_THINKING, messages: [{ role: 'user', content: 'yes or no?' }],
      response_format: { type: 'json_schema', json_schema: { name: 'verdict', schema: SCHEMA, strict: true } } });
    return { content: r.choices[0].message.content, finish_reason: r.choices[0].finish_reason };
  },
  async long_stream(c) {
    // `headers`: seconds until the response began; `max_gap`: the longest silence after that (the
    // wait for the first chunk included), before chunk number `gap_at` (1 = the first).
    const t = performance.now();
    let last = t, chunks = 0, usage = null, gap = 0, gapAt = 0, headers = null;
    try {
      const stream = await chat(c, { ...LONG, stream: true, stream_options: { include_usage: true } });
      last = performance.now();
      headers = (last - t) / 1000;
      for await (const ev of stream) {
        const now = performance.now();
        chunks += 1;
        if ((now - last) / 1000 > gap) [gap, gapAt] = [(now - last) / 1000, chunks];
        last = now;
        usage = ev.usage ?? usage;
      }
    } catch (e) {
      e.partial = { headers, chunks, max_gap: gap, silent_at_cut: (performance.now() - last) / 1000 };
      throw e;
    }
    return { chunks, completion_tokens: usage.completion_tokens, seconds: (last - t) / 1000, headers,
      max_gap: gap, gap_at: gapAt };
  },
  async long_chat(c) {
    const t = performance.now();
    const r = await chat(c, LONG);
    return { completion_tokens: r.usage.completion_tokens, seconds: (performance.now() - t) / 1000 };
  },
  async cancel(c) {
    // Read two chunks of a long stream, then drop it, as an application does on a user's 'stop'.
    const stream = await chat(c, { ...LONG, stream: true });
    let got = 0;
    for await (const _ of stream) {
      got += 1;
      if (got === 2) break;
    }
    stream.controller.abort();
    return { chunks_read: got };
  },
  async concurrent(c) {
    const out = await Promise.all([0, 1, 2, 3].map(() => streamUsage(c)));
    return { streams: out.length, with_usage: out.filter((r) => r.usage).length,
      finished: out.filter((r) => r.finish_reason).length };
  },
  wrong_key: () => models(client('sk-not-a-key-0000')),
  missing_key: () => models(client('unused', { defaultHeaders: { Authorization: null } })),
  async unknown_model(c) {
    return { r: (await c.chat.completions.create({ model: 'no-such-model', messages: MSG, max_tokens: 2 })).id };
  },
  async context_too_long(c) {
    return { r: (await chat(c, { max_tokens: 4, messages: [{ role: 'user', content: 'word '.repeat(600) }] })).id };
  },
  async rate(c) {
    // Chats until the key's RPM limit answers: how many passed, then what the client raised.
    let done = 0;
    try {
      for (let i = 0; i < 6; i += 1) {
        await chat(c, { max_tokens: 2 });
        done += 1;
      }
    } catch (e) {
      if (!(e instanceof OpenAI.APIError)) throw e;
      return { ok: done, error: e.constructor.name, status: e.status ?? null, message: e.message };
    }
    return { ok: done };
  },
  recover: (c) => cases.chat(c), // a chat while the backend is down or coming back: the client's retries carry it
};

async function run(name) {
  attempts = 0;
  const t = performance.now();
  let res;
  try {
    res = { result: await cases[name](client()) };
  } catch (e) {
    // A connection cut while a stream's body is read is not wrapped by the SDK: undici's own
    // TypeError('terminated') (cause ECONNRESET) reaches the application, as it is reported here.
    const cut = e instanceof TypeError && e.message === 'terminated';
    if (!(e instanceof OpenAI.OpenAIError) && !cut) throw e;
    res = { error: e.constructor.name, status: e.status ?? null, message: e.message, body: e.error ?? null };
    if (cut) res.cause = e.cause?.code ?? null;
    if (e.partial) res.partial = e.partial;
  }
  const took = Math.round(performance.now() - t) / 1000;
  return { case: name, client: 'node', version: VERSION, attempts, took, ...res };
}

for (const name of process.argv.slice(2)) console.log(JSON.stringify(await run(name)));
