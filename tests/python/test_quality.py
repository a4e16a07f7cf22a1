"""Quality samples through the Python binding (issue 19): record_quality scores the provider,
bad samples are refused with a typed error, and a publisher whose uplink is bad on every provider
asks its Python adapter to lower its quality (set_quality) instead of hopping; an adapter
without set_quality gets the default ("not supported")."""

import pytest

from conftest import ScriptedAdapter, Recorder, fast_config
from streamguard import (
    EventKind,
    ProviderError,
    QualityBand,
    QualityLevel,
    QualitySample,
    StreamguardError,
    StreamingProviderManager,
)


def sample(frames, stall_ms):
    return QualitySample(
        interval_ms=1000, frames=frames, stall_ms=stall_ms, bitrate_kbps=None, rtt_ms=None,
        loss_percent=None,
    )


class QualityAdapter(ScriptedAdapter):
    """A scripted adapter whose SDK can lower a stream's quality; records what it was asked."""

    def __init__(self, name, journal, **script):
        super().__init__(name, journal, **script)
        self.levels = []

    async def set_quality(self, stream_id, level):
        self.levels.append((stream_id, level))
        self.journal.record(self.name, "set_quality", stream_id)  # wakes journal.wait_for


def test_samples_score_the_provider_and_bad_ones_are_refused(registry, journal, run):
    recorder = Recorder()

    async def scenario():
        async with StreamingProviderManager(fast_config(registry.base_url)) as m:
            m.register_adapter("agora", ScriptedAdapter("agora", journal))
            handle = m.add_listener(recorder)  # the listener lives as long as its handle
            await m.start_stream("s")
            m.record_quality("s", sample(15, 0))
            changed = recorder.expect(EventKind.QUALITY_CHANGED, provider="agora")
            assert changed.to == QualityBand.GOOD and changed.score == pytest.approx(100.0)
            m.record_quality("s", sample(0, 1000))
            stats = {s.provider: s for s in m.provider_stats()}
            assert stats["agora"].quality_score == pytest.approx(70.0)
            with pytest.raises(StreamguardError.InvalidArgument):
                m.record_quality("s", sample(15, 2000))
            with pytest.raises(StreamguardError.UnknownSession):
                m.record_quality("nobody", sample(15, 0))

    run(scenario())


def test_a_publisher_bad_on_every_provider_lowers_its_quality_instead_of_hopping(
    registry, journal, run
):
    agora = ScriptedAdapter("agora", journal)  # default set_quality: not supported
    zego = QualityAdapter("zegocloud", journal)
    recorder = Recorder()

    async def scenario():
        async with StreamingProviderManager(fast_config(registry.base_url)) as m:
            m.register_adapter("agora", agora)
            m.register_adapter("zegocloud", zego)
            handle = m.add_listener(recorder)  # the listener lives as long as its handle
            await m.start_stream("s")
            for _ in range(3):
                m.record_quality("s", sample(0, 1000))
            m.record_error("s", ProviderError.Unauthorized("revoked"))
            recorder.expect(EventKind.MIGRATION_FINISHED, stream_id="s", to="zegocloud")
            for _ in range(3):
                m.record_quality("s", sample(0, 1000))
            assert journal.wait_for(lambda: zego.levels), "set_quality was asked"
            assert zego.levels[0] == ("s", QualityLevel.MEDIUM)
            assert m.session("s").provider == "zegocloud"

    run(scenario())
