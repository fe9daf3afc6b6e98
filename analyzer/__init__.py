"""confscope: through which countries and networks did a call travel, and where were its keys handed out?"""

from __future__ import annotations

__version__ = "0.1.0"
