// Portcullis web UI: the few lines of script a page needs (no inline script: the pages'
// Content-Security-Policy forbids it). Recordings play in asciinema-player.
document.addEventListener("DOMContentLoaded", () => {
  for (const el of document.querySelectorAll(".player[data-cast]")) {
    if (window.AsciinemaPlayer) {
      // A search hit: start at its second (what came before is drawn at once).
      const at = el.dataset.startAt === undefined ? null : Number(el.dataset.startAt);
      const options = at === null ? { fit: "width", idleTimeLimit: 2 } : { fit: "width", startAt: at, autoPlay: true };
      window.AsciinemaPlayer.create(el.dataset.cast, el, options);
      if (at !== null) {
        el.scrollIntoView();
      }
    }
  }
  // A live session: the server streams it as it happens.
  for (const el of document.querySelectorAll(".player[data-live]")) {
    if (window.AsciinemaPlayer) {
      window.AsciinemaPlayer.create({ url: el.dataset.live, driver: "eventsource" }, el, { fit: "width", autoPlay: true });
    }
  }
});

// Checking a credential out: "show" puts it on the page for 30 seconds, "copy" puts it on the
// clipboard without rendering it. The server audits both.
document.addEventListener("DOMContentLoaded", () => {
  const out = document.getElementById("secret");
  let timer = null;
  for (const button of document.querySelectorAll("button.reveal")) {
    button.addEventListener("click", async () => {
      const body = new URLSearchParams({ csrf: button.dataset.csrf, how: button.dataset.how });
      const response = await fetch(`/checkout/${button.dataset.request}`, { method: "POST", body });
      const answer = await response.json();
      if (!response.ok) {
        out.textContent = answer.message;
        return;
      }
      clearTimeout(timer);
      if (button.dataset.how === "copy") {
        await navigator.clipboard.writeText(answer.secret);
        out.textContent = "Copied to the clipboard.";
      } else {
        out.textContent = answer.secret;
      }
      timer = setTimeout(() => { out.textContent = ""; }, 30000);
    });
  }
});

// An RDP recording: its frames (pictures decoded by the server), shown at their times, with
// play, pause, seeking, and the screen at the current moment saved as a picture.
document.addEventListener("DOMContentLoaded", () => {
  for (const el of document.querySelectorAll(".screen-player[data-frames]")) {
    const img = el.querySelector("img.screen");
    const play = el.querySelector("button.play");
    const seek = el.querySelector("input.seek");
    const time = el.querySelector(".time");
    const still = el.querySelector("a.still-link");
    let frames = [];
    let now = 0;
    let timer = null;
    let shown = -1;
    const clock = (ms) => {
      const s = Math.floor(ms / 1000);
      return `${Math.floor(s / 60)}:${String(s % 60).padStart(2, "0")}`;
    };
    const show = () => {
      let i = 0;
      while (i + 1 < frames.length && frames[i + 1].at_ms <= now) i++;
      if (frames.length && i !== shown) {
        img.src = `${el.dataset.frames}/${frames[i].index}.png`;
        shown = i;
      }
      seek.value = String(now);
      time.textContent = `${clock(now)} / ${clock(Number(seek.max))}`;
      still.href = `${el.dataset.still}?at=${(now / 1000).toFixed(1)}`;
    };
    const stop = () => {
      clearInterval(timer);
      timer = null;
      play.textContent = "Play";
    };
    play.addEventListener("click", () => {
      if (timer) return stop();
      if (now >= Number(seek.max)) now = 0;
      play.textContent = "Pause";
      let last = performance.now();
      timer = setInterval(() => {
        const t = performance.now();
        now = Math.min(now + (t - last), Number(seek.max));
        last = t;
        show();
        if (now >= Number(seek.max)) stop();
      }, 100);
    });
    seek.addEventListener("input", () => {
      now = Number(seek.value);
      show();
    });
    fetch(el.dataset.frames).then(async (r) => {
      const answer = await r.json();
      if (!r.ok) {
        time.textContent = answer.message;
        return;
      }
      frames = answer.frames;
      seek.max = String(frames.length ? frames[frames.length - 1].at_ms : 0);
      show();
    });
  }
});

// A live RDP session: its screen as a picture, fetched again every second.
document.addEventListener("DOMContentLoaded", () => {
  for (const img of document.querySelectorAll("img.live-screen[data-src]")) {
    const next = () => { img.src = `${img.dataset.src}?t=${Date.now()}`; };
    next();
    setInterval(next, 1000);
  }
});
