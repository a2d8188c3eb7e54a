"""The project's small exception hierarchy; the CLI and the API turn these into clear messages."""


class RagError(Exception):
    """Base of every error this project raises on purpose."""


class InputError(RagError):
    """Bad user input: a malformed file, an empty document, an unknown format or option."""


class UnreadableDocumentError(InputError):
    """One document that holds nothing to index: empty text, a PDF with no text layer (a scan), a file
    that needs a password. A corpus read from disk is indexed without it and counts it; alone (one file,
    an upload) it is refused with this message."""


class IndexNotFoundError(RagError):
    """No index exists at the given directory."""


class IndexCorruptError(RagError):
    """An index snapshot is incomplete or does not match its manifest."""


class IndexBusyError(RagError):
    """Another writer holds the index's write lock."""


class ModelError(RagError):
    """A model could not be found or loaded."""


class GeneratorError(RagError):
    """The generator failed: a server down, a timeout, or an answer that is not what the protocol says."""


class GeneratorUnavailableError(GeneratorError):
    """The generator cannot be reached or loaded at all (the API answers 503)."""


class EngineUnavailableError(RagError):
    """The index engine the settings name (Qdrant, Ray) is not installed or cannot be reached."""
