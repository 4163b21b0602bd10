"""The servers dashboard: `data` reads what it shows, `cards` is one card's view model, `render`
renders the page and the live part a poll morphs in."""
