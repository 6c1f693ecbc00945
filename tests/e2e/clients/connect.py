import os

from openai import OpenAI

client = OpenAI(base_url=os.environ["LLM_BASE_URL"], api_key=os.environ["LLM_API_KEY"])
messages = [{"role": "user", "content": "Hello!"}]
stream = client.chat.completions.create(
    model="qwen3-0.6b", messages=messages, stream=True, stream_options={"include_usage": True}
)
for chunk in stream:
    if chunk.usage:  # the last chunk: usage and empty `choices`, as in OpenAI's reference
        print(f"\n[{chunk.usage.completion_tokens} tokens]")
    elif chunk.choices:
        print(chunk.choices[0].delta.content or "", end="", flush=True)
