"""The provider's server-rendered pages: sign-in, sign-up, signed out, and errors. No scripts."""

from __future__ import annotations

from html import escape

from fastapi.responses import HTMLResponse

_STYLE = """
body{font-family:system-ui,sans-serif;max-width:26rem;margin:4rem auto;padding:0 1rem;color:#222}
h1{font-size:1.5rem}label{display:block;margin:.8rem 0 .2rem}
input{width:100%;padding:.5rem;box-sizing:border-box}
button{margin-top:1rem;padding:.6rem 1.2rem}
.notice{background:#eef6ee;padding:.6rem}.error{background:#fbeaea;padding:.6rem}
"""


def page(title: str, body: str, *, status: int = 200) -> HTMLResponse:
    html = (
        "<!doctype html><html lang='en'><head><meta charset='utf-8'>"
        "<meta name='viewport' content='width=device-width, initial-scale=1'>"
        f"<title>{escape(title)} · Cleave</title><style>{_STYLE}</style></head>"
        f"<body><main><h1>{escape(title)}</h1>{body}</main></body></html>"
    )
    return HTMLResponse(
        html,
        status_code=status,
        headers={
            "Cache-Control": "no-store",
            # No form-action: browsers apply it to the redirect back to the app after sign-in.
            "Content-Security-Policy": "default-src 'none'; style-src 'unsafe-inline'; "
            "frame-ancestors 'none'",
            "X-Frame-Options": "DENY",
            "X-Content-Type-Options": "nosniff",
        },
    )


def _message(notice: str | None, error: str | None) -> str:
    parts = []
    if notice:
        parts.append(f"<p class='notice' role='status'>{escape(notice)}</p>")
    if error:
        parts.append(f"<p class='error' role='alert'>{escape(error)}</p>")
    return "".join(parts)


def sign_in(
    *,
    action: str,
    csrf: str,
    next_url: str,
    sign_up_url: str,
    email: str = "",
    notice: str | None = None,
    error: str | None = None,
    status: int = 200,
) -> HTMLResponse:
    return page(
        "Sign in",
        _message(notice, error) + f"<form method='post' action='{escape(action)}'>"
        f"<input type='hidden' name='csrf' value='{escape(csrf)}'>"
        f"<input type='hidden' name='next' value='{escape(next_url)}'>"
        "<label for='email'>Email</label>"
        f"<input id='email' name='email' type='email' autocomplete='username' required "
        f"value='{escape(email)}'>"
        "<label for='password'>Password</label>"
        "<input id='password' name='password' type='password' "
        "autocomplete='current-password' required>"
        "<button type='submit'>Sign in</button></form>"
        f"<p>New here? <a href='{escape(sign_up_url)}'>Create an account</a></p>",
        status=status,
    )


def sign_up(
    *,
    action: str,
    csrf: str,
    next_url: str,
    error: str | None = None,
    status: int = 200,
    email: str = "",
    name: str = "",
) -> HTMLResponse:
    return page(
        "Create an account",
        _message(None, error) + f"<form method='post' action='{escape(action)}'>"
        f"<input type='hidden' name='csrf' value='{escape(csrf)}'>"
        f"<input type='hidden' name='next' value='{escape(next_url)}'>"
        "<label for='name'>Name</label>"
        f"<input id='name' name='name' autocomplete='name' required value='{escape(name)}'>"
        "<label for='email'>Email</label>"
        f"<input id='email' name='email' type='email' autocomplete='username' required "
        f"value='{escape(email)}'>"
        "<label for='password'>Password (at least 10 characters)</label>"
        "<input id='password' name='password' type='password' autocomplete='new-password' "
        "minlength='10' required>"
        "<button type='submit'>Create account</button></form>",
        status=status,
    )


def sign_out(*, action: str, csrf: str, hidden: dict[str, str], status: int = 200) -> HTMLResponse:
    """The confirmation a sign-out asks for when no app proved it asked (logout CSRF)."""
    fields = "".join(
        f"<input type='hidden' name='{escape(name)}' value='{escape(value)}'>"
        for name, value in hidden.items()
    )
    return page(
        "Sign out",
        f"<form method='post' action='{escape(action)}'>"
        f"<input type='hidden' name='csrf' value='{escape(csrf)}'>{fields}"
        "<p>Sign out of your account here?</p>"
        "<button type='submit'>Sign out</button></form>",
        status=status,
    )


def message(title: str, text: str, *, status: int = 200) -> HTMLResponse:
    return page(title, f"<p>{escape(text)}</p>", status=status)
