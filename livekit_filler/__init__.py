"""livekit-filler: natural filler speech for LiveKit voice agents while function tools work.

Fillers are played through the session's own speech scheduler, stay out of the LLM's
history, give way at once to real speech, the user and AgentTask hand-offs, and never
raise the "draining/pausing" or "circular wait" errors.
"""

from .contextual import ContextualFillers
from .controller import FillerController
from .decorator import fillers
from .errors import FillerConfigError
from .events import FillerEvent
from .floor import Verdict
from .marks import is_filler_speech
from .metrics import FillerMetrics
from .settings import FillerSettings, ToolRule
from .sound_cache import FillerAudioCache, shared_cache
from .tts_identity import voice_key
from .version import __version__

__all__ = [
    "ContextualFillers",
    "FillerAudioCache",
    "FillerConfigError",
    "FillerController",
    "FillerEvent",
    "FillerMetrics",
    "FillerSettings",
    "ToolRule",
    "Verdict",
    "__version__",
    "fillers",
    "is_filler_speech",
    "shared_cache",
    "voice_key",
]
