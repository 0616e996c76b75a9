"""``nfd`` mode: hand the labels to Node Feature Discovery through a ``features.d`` file.

NFD's ``local`` feature source reads every file in its ``features.d`` directory, one
``name=value`` per line, and labels the Node ``feature.node.kubernetes.io/<name>``. We write the
names through :func:`detector.labels.nfd_feature_name`, so NFD produces exactly the keys the
matcher looks for, and NFD (not this agent) owns the Node object in this mode.

The file is replaced atomically: the new content goes to a dot-file in the same directory
(NFD skips hidden files), is flushed and fsynced, then renamed over the old one, and the
directory is fsynced, so NFD never reads half a file, even across a crash. Nothing is written
when the content would not change, so NFD sees no churn.
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Mapping
from pathlib import Path

from detector.labels import PREFIX_DOMAIN, is_owned_key, is_valid_label_value, nfd_feature_name
from detector.publish import PublishError

log = logging.getLogger(__name__)

DEFAULT_FEATURES_DIR = Path("/etc/kubernetes/node-feature-discovery/features.d")
FILE_NAME = "aim-accelerator"
HEADER = "# Written by aim-detector (AMD accelerator labels). Do not edit: it is rewritten.\n"


def render(labels: Mapping[str, str]) -> str:
    """The features file for ``labels``: the header, then ``name=value`` lines, sorted."""
    lines = [f"{nfd_feature_name(k)}={v}\n" for k, v in sorted(labels.items())]
    return HEADER + "".join(lines)


def parse(text: str) -> dict[str, str]:
    """The detector's labels in a features file (comments, blank and foreign lines skipped)."""
    labels: dict[str, str] = {}
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        name, _, value = line.partition("=")
        key = f"{PREFIX_DOMAIN}/{name.strip()}"
        if is_owned_key(key) and is_valid_label_value(value.strip()):
            labels[key] = value.strip()
    return labels


class NfdPublisher:
    """Publishes the detector's labels as ``<features_dir>/aim-accelerator``."""

    def __init__(self, features_dir: Path = DEFAULT_FEATURES_DIR) -> None:
        self.path = Path(features_dir) / FILE_NAME
        self._tmp = self.path.with_name("." + FILE_NAME)
        self.target = f"nfd:{self.path}"

    def read(self) -> dict[str, str]:
        """What a previous run wrote: the labels to keep while a probe fails after a restart.

        An I/O error is a PublishError (the cycle is retried), not "nothing was written".
        Garbled bytes cost only the lines they are on.
        """
        try:
            data = self.path.read_bytes()
        except FileNotFoundError:
            return {}
        except OSError as err:
            raise PublishError(f"cannot read {self.path}: {err}") from err
        text = data.decode("utf-8", errors="replace")
        if "\ufffd" in text:
            log.warning(
                "features file partly garbled; keeping the lines that still parse",
                extra={"path": str(self.path)},
            )
        return parse(text)

    def publish(self, labels: Mapping[str, str], *, complete: bool = True) -> bool:
        del complete  # the features file has no mark: an empty file is no labels either way
        for key in labels:
            if not is_owned_key(key):
                raise ValueError(f"refusing to write {key!r}: not a detector label key")
        content = render(labels)
        if self._read_text() == content:
            return False
        self._write_atomically(content)
        log.info("features file written", extra={"path": str(self.path)})
        return True

    def cleanup(self) -> bool:
        with contextlib.suppress(FileNotFoundError):
            self._tmp.unlink()
        try:
            self.path.unlink()
        except FileNotFoundError:
            return False
        except OSError as err:
            raise PublishError(f"cannot remove {self.path}: {err}") from err
        self._fsync_dir()
        return True

    def _read_text(self) -> str | None:
        try:
            return self.path.read_text(encoding="utf-8")
        except FileNotFoundError:
            return None
        except (OSError, UnicodeDecodeError) as err:
            # Unreadable or garbled: rewriting it is the fix, so treat it as different content.
            log.warning(
                "features file unreadable, rewriting",
                extra={"path": str(self.path), "error": str(err)},
            )
            return ""

    def _write_atomically(self, content: str) -> None:
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(self._tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
            with os.fdopen(fd, "w", encoding="utf-8") as tmp:
                tmp.write(content)
                tmp.flush()
                os.fsync(tmp.fileno())
            os.replace(self._tmp, self.path)
        except OSError as err:
            with contextlib.suppress(OSError):
                self._tmp.unlink()
            raise PublishError(f"cannot write {self.path}: {err}") from err
        self._fsync_dir()

    def _fsync_dir(self) -> None:
        # Makes the rename itself durable. Some filesystems refuse fsync on a directory.
        with contextlib.suppress(OSError):
            fd = os.open(self.path.parent, os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
