// Portcullis web UI: the few lines of script a page needs (no inline script: the pages'
// Content-Security-Policy forbids it). Recordings play in asciinema-player.
document.addEventListener("DOMContentLoaded", () => {
  for (const el of document.querySelectorAll(".player[data-cast]")) {
    if (window.AsciinemaPlayer) {
      window.AsciinemaPlayer.create(el.dataset.cast, el, { fit: "width", idleTimeLimit: 2 });
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
