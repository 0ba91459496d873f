"""Code generation for ``python`` steps through a chat LLM: the prompt, and extracting the code from a reply.

The generated code is untrusted like any other: it is analyzed, approved per the policy, and run in the
sandbox. When an attempt fails, the next prompt carries the previous code and the error (Osprey's
generate -> analyze -> execute -> regenerate loop).
"""

from __future__ import annotations

import re

from tern.llm.chat import AnthropicChat, ChatMessage, ChatProvider, OpenAIChat
from tern.models.planning import LLMUsage
from tern.models.python_step import GenerateCodeInput, GeneratedCode

SYSTEM = (
    "You write Python 3 analysis code for particle-accelerator operators. The code runs in a sandbox with "
    "numpy, scipy, pandas and matplotlib, no network and no control-system access. Its inputs are in the dict "
    "`inputs` (already defined). It must assign a dict named `results` with the requested keys. To propose "
    "setpoint changes, set results['proposed_writes'] = [{'channel': NAME, 'value': NUMBER}]; never write to "
    "the control system yourself. Save figures with matplotlib. Archived history (inputs whose name ends in "
    "'_series') loads with load_series(NAME) as {channel: pandas DataFrame indexed by UTC time, columns value, "
    "severity, status}. A channel read whose reading has an 'artifact_id' (a PVAccess camera image, table or long "
    "waveform) loads with load_image(STEP_INPUT, CHANNEL) as a numpy array, or load_structured(STEP_INPUT, CHANNEL) "
    "as {name: numpy array}. Reply with one ```python code block only."
)
_BLOCK = re.compile(r"```(?:python|py)?\s*\n(.*?)```", re.DOTALL)


def build_messages(inp: GenerateCodeInput) -> list[ChatMessage]:
    """The chat messages for one generation attempt."""
    parts = [f"Objective: {inp.objective}"]
    if inp.input_names:
        parts.append("Inputs available: " + ", ".join(f"inputs[{n!r}]" for n in inp.input_names))
    if inp.expected_keys:
        parts.append("results must contain the keys: " + ", ".join(inp.expected_keys))
    if inp.previous_code and inp.feedback:
        parts.append(f"The previous attempt failed.\n```python\n{inp.previous_code}\n```\nError:\n{inp.feedback}")
    return [ChatMessage(role="system", content=SYSTEM), ChatMessage(role="user", content="\n\n".join(parts))]


def extract_code(reply: str) -> str:
    """The first fenced code block of ``reply``, or the whole reply when it has none. Raises ``ValueError``
    when nothing is left."""
    m = _BLOCK.search(reply)
    code = (m.group(1) if m else reply).strip()
    if not code:
        raise ValueError("the model's reply contains no code")
    return code


async def generate(provider: ChatProvider, inp: GenerateCodeInput) -> GeneratedCode:
    """Ask ``provider`` for code; the token usage is counted when the provider reports it (the SDK clients of
    ``tern.llm``). Raises ``tern.llm.chat.LLMError`` or ``ValueError``."""
    if isinstance(provider, OpenAIChat | AnthropicChat):
        reply = await provider.reply(build_messages(inp), max_tokens=2000)
        usage = LLMUsage(calls=1, prompt_tokens=reply.prompt_tokens, completion_tokens=reply.completion_tokens)
        return GeneratedCode(code=extract_code(reply.text), usage=usage)
    return GeneratedCode(code=extract_code(await provider.complete(build_messages(inp), max_tokens=2000)))
