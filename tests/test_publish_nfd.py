"""NFD mode: the features.d file is written atomically, only on change, and removed on cleanup."""

from __future__ import annotations

import os

import pytest

from detector.labels import PREFIX_DOMAIN, accelerator_label_key, epyc_id, partition_label_key
from detector.publish import PublishError
from detector.publish.nfd import FILE_NAME, HEADER, NfdPublisher, parse, render

MI300X = accelerator_label_key("MI300X")
CPX = partition_label_key("CPX-NPS4")
ZEN5 = accelerator_label_key(epyc_id("ZEN5"))
LABELS = {MI300X: "8", CPX: "64", ZEN5: "256"}


def nfd_labels(path):
    """The labels NFD's local source makes of a features file: ``<prefix>/<name>=<value>``."""
    labels = {}
    for line in path.read_text().splitlines():
        if line and not line.startswith("#"):
            name, _, value = line.partition("=")
            labels[f"{PREFIX_DOMAIN}/{name}"] = value
    return labels


def test_publish_writes_nfd_names_that_become_our_keys(tmp_path):
    pub = NfdPublisher(tmp_path)
    assert pub.publish(LABELS) is True
    path = tmp_path / FILE_NAME
    text = path.read_text()
    assert text == (
        HEADER
        + "aim-accelerator.EPYC_ZEN5=256\n"
        + "aim-accelerator.MI300X=8\n"
        + "aim-accelerator.partitioning-scheme.CPX-NPS4=64\n"
    )
    assert nfd_labels(path) == LABELS
    assert sorted(p.name for p in tmp_path.iterdir()) == [FILE_NAME], "no dot-file left behind"


def test_unchanged_labels_do_not_touch_the_file(tmp_path):
    pub = NfdPublisher(tmp_path)
    pub.publish(LABELS)
    before = os.stat(tmp_path / FILE_NAME)
    assert pub.publish(dict(LABELS)) is False
    after = os.stat(tmp_path / FILE_NAME)
    assert (after.st_ino, after.st_mtime_ns) == (before.st_ino, before.st_mtime_ns)


def test_changed_labels_replace_the_file_by_rename(tmp_path):
    pub = NfdPublisher(tmp_path)
    pub.publish(LABELS)
    before = os.stat(tmp_path / FILE_NAME).st_ino
    assert pub.publish({ZEN5: "256"}) is True
    assert os.stat(tmp_path / FILE_NAME).st_ino != before, "a new file renamed into place"
    assert nfd_labels(tmp_path / FILE_NAME) == {ZEN5: "256"}
    assert not (tmp_path / f".{FILE_NAME}").exists()


def test_a_stale_dot_file_from_a_crash_is_overwritten(tmp_path):
    (tmp_path / f".{FILE_NAME}").write_text("half a fi")
    pub = NfdPublisher(tmp_path)
    pub.publish(LABELS)
    assert nfd_labels(tmp_path / FILE_NAME) == LABELS
    assert not (tmp_path / f".{FILE_NAME}").exists()


def test_read_returns_what_a_previous_run_wrote(tmp_path):
    NfdPublisher(tmp_path).publish(LABELS)
    assert NfdPublisher(tmp_path).read() == LABELS
    assert NfdPublisher(tmp_path / "nothing-here").read() == {}


def test_garbled_file_is_rewritten(tmp_path):
    (tmp_path / FILE_NAME).write_bytes(b"\xff\xfe\x00garbage")
    pub = NfdPublisher(tmp_path)
    assert pub.read() == {}
    assert pub.publish(LABELS) is True
    assert nfd_labels(tmp_path / FILE_NAME) == LABELS


def test_garbled_lines_cost_only_themselves(tmp_path):
    """A restarted agent keeps what it can still read of its previous file."""
    (tmp_path / FILE_NAME).write_bytes(
        render(LABELS).encode() + b"aim-accelerator.MI325X=\xff\xfe\n"
    )
    assert NfdPublisher(tmp_path).read() == LABELS


def test_unreadable_file_is_an_error_not_an_empty_file(tmp_path):
    (tmp_path / FILE_NAME).mkdir()  # reading it fails with IsADirectoryError
    with pytest.raises(PublishError, match="cannot read"):
        NfdPublisher(tmp_path).read()


def test_parse_skips_comments_blank_and_foreign_lines():
    text = "# +expiry-time=2030-01-01T00:00:00Z\n\ncpu-foo=true\n aim-accelerator.MI300X = 8 \n"
    assert parse(text) == {MI300X: "8"}
    assert parse(render(LABELS)) == LABELS


def test_missing_directory_is_created(tmp_path):
    pub = NfdPublisher(tmp_path / "etc" / "features.d")
    assert pub.publish(LABELS) is True
    assert nfd_labels(tmp_path / "etc" / "features.d" / FILE_NAME) == LABELS


def test_unwritable_target_names_the_file(tmp_path):
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("")
    pub = NfdPublisher(blocker)
    with pytest.raises(PublishError, match=str(blocker / FILE_NAME)):
        pub.publish(LABELS)


def test_foreign_keys_are_refused(tmp_path):
    with pytest.raises(ValueError, match="refusing"):
        NfdPublisher(tmp_path).publish({"example.com/x": "1"})


def test_cleanup_removes_the_file_and_only_it(tmp_path):
    other = tmp_path / "other-vendor"
    other.write_text("vendor.feature=true\n")
    pub = NfdPublisher(tmp_path)
    pub.publish(LABELS)
    assert pub.cleanup() is True
    assert not (tmp_path / FILE_NAME).exists()
    assert other.read_text() == "vendor.feature=true\n"
    assert pub.cleanup() is False
