"""Rasa's SQL tracker store, with erasure.

When a worker confirms that their data must be deleted, the action sets the slot ``erased``.
On the next save this store deletes every stored event of that conversation and keeps only a
fresh start (with the conversation's language), so the transcript in Rasa's store goes too, not
only the case store's copy. Configured in ``endpoints.yml``:

    tracker_store:
      type: bot.tracker_store.HelplineTrackerStore
      dialect: sqlite
      db: helpline-tracker.db
"""

from __future__ import annotations

import logging

from rasa.core.tracker_store import SQLTrackerStore
from rasa.shared.core.events import ActionExecuted, SessionStarted, SlotSet
from rasa.shared.core.trackers import DialogueStateTracker

logger = logging.getLogger(__name__)

ERASED_SLOT = "erased"


def erasure_requested(tracker: DialogueStateTracker) -> bool:
    return any(isinstance(e, SlotSet) and e.key == ERASED_SLOT and e.value for e in tracker.events)


class HelplineTrackerStore(SQLTrackerStore):
    async def save(self, tracker: DialogueStateTracker) -> None:
        if not erasure_requested(tracker):
            await super().save(tracker)
            return
        language = tracker.get_slot("language")
        with self.session_scope() as session:
            deleted = (
                session.query(self.SQLEvent)
                .filter(self.SQLEvent.sender_id == tracker.sender_id)
                .delete(synchronize_session=False)
            )
            session.commit()
        events = [ActionExecuted("action_session_start"), SessionStarted()]
        if language:
            events.append(SlotSet("language", language))
        events.append(ActionExecuted("action_listen"))
        fresh = DialogueStateTracker.from_events(
            tracker.sender_id, events, slots=self.domain.slots if self.domain else None
        )
        await super().save(fresh)
        logger.info("conversation erased: %d stored events deleted", deleted)
