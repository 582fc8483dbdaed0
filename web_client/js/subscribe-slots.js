// The subscribing peer connection's slot table: which participant/source each
// receiving m-line (mid) carries now. Slots are re-used for other participants
// later; a slot whose participant_id is null is free. One MediaStream per slot.
// No DOM access here.

export class SlotTable {
  /** @param {(type: string, detail: object) => void} emit receives "track" / "trackremoved" */
  constructor(emit) {
    this.emit = emit;
    this.entries = new Map(); // mid -> {mid, kind, stream, participantId, source}
  }

  /** Map each receiving transceiver of `pc` to the slot of the same mid. */
  apply(pc, slots) {
    const byMid = new Map(slots.map((slot) => [String(slot.mid), slot]));
    for (const transceiver of pc.getTransceivers()) {
      const mid = transceiver.mid;
      if (mid == null) continue;
      const slot = byMid.get(mid);
      const live = slot && slot.participant_id && !transceiver.stopped && transceiver.currentDirection !== "inactive";
      const track = transceiver.receiver.track;
      let entry = this.entries.get(mid);
      if (!entry || !entry.stream.getTracks().includes(track)) {
        if (entry?.participantId) this._release(entry);
        entry = { mid, kind: track.kind, stream: new MediaStream([track]), participantId: null, source: null };
        this.entries.set(mid, entry);
      }
      const owner = live ? { participantId: slot.participant_id, source: slot.source } : null;
      if (entry.participantId && (!owner || owner.participantId !== entry.participantId || owner.source !== entry.source)) {
        this._release(entry);
      }
      if (owner && !entry.participantId) {
        entry.participantId = owner.participantId;
        entry.source = owner.source || (entry.kind === "audio" ? "mic" : "camera");
        this.emit("track", { ...this._detail(entry), stream: entry.stream, track });
      }
    }
  }

  /** Free every slot (connection closed). */
  releaseAll() {
    for (const entry of this.entries.values()) {
      if (entry.participantId) this._release(entry);
    }
    this.entries.clear();
  }

  /** Current remote media: [{participantId, source, kind, mid, stream}]. */
  list() {
    return [...this.entries.values()]
      .filter((entry) => entry.participantId)
      .map((entry) => ({ ...this._detail(entry), stream: entry.stream }));
  }

  _detail(entry) {
    return { participantId: entry.participantId, source: entry.source, kind: entry.kind, mid: entry.mid };
  }

  _release(entry) {
    this.emit("trackremoved", this._detail(entry));
    entry.participantId = null;
    entry.source = null;
  }
}
