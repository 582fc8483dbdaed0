// The participants panel: names, roles, microphone/camera/connection states.
//   <li class="participant" data-participant-id="ID" data-connected="true|false">

import { t } from "./i18n.js";
import { initials, sourceState } from "./tiles.js";

const ROLE_ORDER = ["chair", "secretary", "councillor", "chamber", "technician", "public"];

function compare(a, b) {
  if (a.connected !== b.connected) return a.connected ? -1 : 1;
  const role = ROLE_ORDER.indexOf(a.role) - ROLE_ORDER.indexOf(b.role);
  if (role) return role;
  return a.name.localeCompare(b.name, "fr");
}

function describeMedia(info) {
  const parts = [];
  const mic = sourceState(info, "mic");
  const camera = sourceState(info, "camera");
  if (mic) parts.push(t(mic.muted ? "participants.micOff" : "participants.micOn"));
  if (camera) parts.push(t(camera.muted ? "participants.camOff" : "participants.camOn"));
  if (sourceState(info, "screen")) parts.push(t("participants.sharing"));
  if (!parts.length && info.connected) parts.push(t("participants.noMedia"));
  return parts;
}

export class ParticipantList {
  constructor(list, count) {
    this.list = list;
    this.count = count;
  }

  render(me, participants, activeSpeakerId) {
    const everyone = [...(me ? [me] : []), ...participants].sort(compare);
    const items = everyone.map((info) => this._item(info, me && info.id === me.id, info.id === activeSpeakerId));
    this.list.replaceChildren(...items);
    const connected = everyone.filter((info) => info.connected !== false).length;
    this.count.textContent = t("participants.count", { n: connected });
  }

  clear() {
    this.list.replaceChildren();
    this.count.textContent = "";
  }

  _item(info, isSelf, speaking) {
    const li = document.createElement("li");
    li.className = "participant";
    li.dataset.participantId = info.id;
    li.dataset.connected = String(info.connected !== false);
    li.classList.toggle("is-speaking", speaking);
    li.classList.toggle("is-self", !!isSelf);

    const avatar = document.createElement("span");
    avatar.className = "participant-avatar";
    avatar.setAttribute("aria-hidden", "true");
    avatar.textContent = initials(info.name);

    const body = document.createElement("span");
    body.className = "participant-body";
    const name = document.createElement("span");
    name.className = "participant-name";
    name.textContent = isSelf ? `${info.name} (${t("room.you")})` : info.name;
    const role = document.createElement("span");
    role.className = "participant-role";
    role.textContent = t(`role.${info.role}`);
    const state = document.createElement("span");
    state.className = "participant-state";
    const connection = t(info.connected === false ? "participants.disconnected" : "participants.connected");
    state.textContent = [connection, ...describeMedia(info)].join(" · ");
    body.append(name, role, state);

    if (speaking) {
      const badge = document.createElement("span");
      badge.className = "badge badge-speaking";
      badge.textContent = t("room.speaking");
      body.append(badge);
    }
    li.append(avatar, body);
    return li;
  }
}
