import OpenAI from 'openai';

const client = new OpenAI({ baseURL: process.env.LLM_BASE_URL, apiKey: process.env.LLM_API_KEY });
const stream = await client.chat.completions.create({
  model: 'qwen3-0.6b',
  messages: [{ role: 'user', content: 'Hello!' }],
  stream: true,
  stream_options: { include_usage: true },
});
for await (const chunk of stream) {
  if (chunk.usage) console.log(`\n[${chunk.usage.completion_tokens} tokens]`);
  else if (chunk.choices.length) process.stdout.write(chunk.choices[0].delta.content ?? '');
}
