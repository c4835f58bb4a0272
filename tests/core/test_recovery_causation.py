"""Every decision names the event that caused it (its envelope's causation_id): an audit walks from a
reboot back to the rank that died, and the latency benchmark measures from that record to the call."""

from __future__ import annotations

from tests.core.recovery_world import World


def test_the_decisions_a_failed_rank_leads_to_name_its_event() -> None:
    # GIVEN a 2-rank job on nodes 1 and 2
    world = World()
    world.nodes(3)
    world.job([(1, 1), (2, 2)])
    # WHEN rank 1 dies with an XID on node 1
    seen = len(world.stream)
    effects = world.fails(1, 1, when=10, reason="XID 48 on GPU 0")
    failed = world.stream[seen]
    # THEN every order decided on it (drain, stop the sibling, the check) names that ECS event
    assert effects.orders, "the failure decided nothing"
    assert {o.cause for o in effects.orders} == {str(failed.id)}
    assert all(e.cause == str(failed.id) for e in effects.emits)


def test_the_sibling_stopped_causes_the_check_and_a_deadline_causes_what_follows_it() -> None:
    world = World()
    world.nodes(3)
    world.job([(1, 1), (2, 2)])
    world.fails(1, 1, when=10, reason="XID 48 on GPU 0")
    world.settle_orders()
    # WHEN the sibling's stop is seen
    seen, before = len(world.stream), len(world.orders)
    world.stopped_by_us(2, 2, when=20)
    stopped = world.stream[seen]
    checks = world.orders[before:]
    # THEN the drain and the check name that event
    assert "StartTask" in {o.command.type for o in checks}
    assert {o.cause for o in checks} == {str(stopped.id)}
    # WHEN the check task is started and never reports, and its deadline passes
    world.settle_orders()
    before = len(world.orders)
    world.advance(3 * 3600)
    expired = {str(e.envelope.event_id) for e in world.stream
               if type(getattr(e, "data", None)).__name__ == "DeadlineExpired"}
    after = world.orders[before:]
    # THEN each order decided then names a DeadlineExpired event
    assert expired and after
    assert {o.cause for o in after} <= expired
