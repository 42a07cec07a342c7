// Portcullis web UI: the few lines of script a page needs (no inline script: the pages'
// Content-Security-Policy forbids it). Recordings play in asciinema-player.
document.addEventListener("DOMContentLoaded", () => {
  for (const el of document.querySelectorAll(".player[data-cast]")) {
    if (window.AsciinemaPlayer) {
      window.AsciinemaPlayer.create(el.dataset.cast, el, { fit: "width", idleTimeLimit: 2 });
    }
  }
});
