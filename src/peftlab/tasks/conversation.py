"""A prompt that is a conversation (chat and instruction data, tasks/chat.py): the turns before the final
assistant turn, which the model's chat template formats (models/backbone.py).

A ``Conversation`` is a ``str`` (its plain rendering: 'User: ...\\nAssistant: ...') that also carries its
turns. Everything that handles prompts as text (the overlap check, predictions files, the training and
evaluation loops) keeps working on the rendering unchanged, while the backbone, the one place that
formats prompts for the model, reads the turns. No peftlab imports: models/ and tasks/ both use it.
"""

from __future__ import annotations

ROLES = ("system", "user", "assistant")
LABELS = {"system": "System", "user": "User", "assistant": "Assistant"}


def render_plain(messages: list[dict[str, str]]) -> str:
    """The plain-text template of models without a chat template (and encoder-decoders): one
    'Role: content' line per turn, then 'Assistant:' to be continued."""
    return "\n".join([f"{LABELS[m['role']]}: {m['content']}" for m in messages] + ["Assistant:"])


class Conversation(str):
    """Prompt text (the plain rendering) with its turns, ``messages``: [{role, content}, ...]."""

    messages: list[dict[str, str]]

    def __new__(cls, messages: list[dict[str, str]]) -> Conversation:
        self = super().__new__(cls, render_plain(messages))
        self.messages = [{"role": m["role"], "content": m["content"]} for m in messages]
        return self

    def __reduce__(self):  # pickles (parallel runs) as a conversation, not as its text alone
        return (Conversation, (self.messages,))


def messages_of(prompt) -> list[dict[str, str]] | None:
    """The turns of a prompt given as a conversation or a list of turns; None for plain text."""
    if isinstance(prompt, list):
        return prompt
    return getattr(prompt, "messages", None)
