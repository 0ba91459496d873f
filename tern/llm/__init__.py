"""LLM clients behind a small provider interface (``ChatProvider``); none is configured by default."""

from tern.llm.chat import ChatMessage, ChatProvider, LLMError, OpenAICompatibleChat, make_chat_provider

__all__ = ["ChatMessage", "ChatProvider", "LLMError", "OpenAICompatibleChat", "make_chat_provider"]
