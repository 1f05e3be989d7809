"""The read pacer: a lone packet is read alone, traffic is drained in batches, and no
pattern of readiness keeps a busy source on one-packet reads."""

from __future__ import annotations

from nsroute.engine.pacing import BATCH, IDLE_WAKE, ReadPacer

TUN, UDP = 3, 7


def one_pass(pacer: ReadPacer, at: float, ready: list[int]) -> dict:
    """One pass that starts at `at` and ends 10 us later; the limit for each ready source."""
    pacer.start(at)
    limits = {src: pacer.limit(src) for src in ready}
    pacer.end(at + 0.00001)
    return limits


def test_quiet_is_counted_from_the_last_traffic_not_the_last_nap():
    """A ping every 10 ms meets an engine that napped under 1 ms ago: it must still get the
    lone read, so only passes that moved packets count."""
    p = ReadPacer()
    assert one_pass(p, 0.0, [TUN]) == {TUN: 1}  # no packet yet: quiet
    for nap in (0.001, 0.002, 0.009):
        one_pass(p, nap, [])  # naps: nothing ready, nothing moved
    assert one_pass(p, 0.010, [TUN]) == {TUN: 1}
    # a ping's reply, 0.2 ms after its request's pass ended
    assert one_pass(p, 0.01021, [UDP]) == {UDP: 1}


def test_traffic_is_drained_in_batches():
    p = ReadPacer()
    one_pass(p, 0.0, [TUN, UDP])  # quiet: both alone
    t = 0.00002
    for _ in range(5):  # both still ready right after: there is more behind each
        assert one_pass(p, t, [TUN, UDP]) == {TUN: BATCH, UDP: BATCH}
        t += 0.00002


def test_the_kernels_answer_to_a_lone_packet_is_read_alone():
    """A ping reaching the far side: the UDP request is read alone, and the reply that its
    TUN write put in the TUN at once is read alone too, though no time has passed."""
    p = ReadPacer()
    assert one_pass(p, 1.0, [UDP]) == {UDP: 1}
    assert one_pass(p, 1.00001, [TUN]) == {TUN: 1}
    # and the request's answer to that (say the next segment) is alone again
    assert one_pass(p, 1.00002, [UDP]) == {UDP: 1}


def test_a_source_read_alone_and_still_ready_is_drained_in_batches():
    p = ReadPacer()
    assert one_pass(p, 1.0, [UDP]) == {UDP: 1}
    assert one_pass(p, 1.00001, [UDP, TUN]) == {UDP: BATCH, TUN: 1}
    # that pass read in batches: the chain is over, everything is drained in batches
    assert one_pass(p, 1.00002, [TUN]) == {TUN: BATCH}
    assert one_pass(p, 1.00003, [UDP]) == {UDP: BATCH}


def test_alternating_busy_sources_do_not_stay_on_lone_reads():
    """Under load both sources are ready in most passes; whatever the order, after a pass
    with a batch read the next ones are batch reads until real quiet."""
    p = ReadPacer()
    one_pass(p, 0.0, [TUN])
    t, lone = 0.00001, 0
    for i in range(100):
        ready = [TUN, UDP] if i % 3 else [UDP if i % 2 else TUN]
        lone += sum(1 for v in one_pass(p, t, ready).values() if v == 1)
        t += 0.00001
    assert lone <= 2


def test_a_nap_between_chained_passes_keeps_the_pacing_state():
    p = ReadPacer()
    one_pass(p, 1.0, [UDP])
    one_pass(p, 1.00001, [])  # a wake-up with nothing ready (a signal, a nap)
    assert one_pass(p, 1.00002, [UDP]) == {UDP: BATCH}  # UDP ready again: more behind it
    assert p.since_traffic(1.00003) < IDLE_WAKE


def test_end_twice_without_a_pass_changes_nothing():
    """The loop's top runs end() again after an interrupted epoll call, with no pass between."""
    p = ReadPacer()
    p.start(1.0)
    p.limit(UDP)
    p.end(1.00001)
    p.end(1.0005)  # EINTR: no pass, so no traffic at 1.0005
    assert p.since_traffic(1.0005) > IDLE_WAKE
    assert one_pass(p, 1.0005, [UDP]) == {UDP: 1}
