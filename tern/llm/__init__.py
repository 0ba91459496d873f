"""LLM clients behind a small provider interface (``ChatProvider``) over the official openai and anthropic SDKs;
none is configured by default."""

from tern.llm.chat import (
    AnthropicChat,
    ChatMessage,
    ChatProvider,
    ChatReply,
    LLMClient,
    LLMError,
    LLMRole,
    OpenAIChat,
    OpenAICompatibleChat,
    make_chat_provider,
)

__all__ = [
    "AnthropicChat",
    "ChatMessage",
    "ChatProvider",
    "ChatReply",
    "LLMClient",
    "LLMError",
    "LLMRole",
    "OpenAIChat",
    "OpenAICompatibleChat",
    "make_chat_provider",
]
