import type { CityClient, SecondMeHistoryItem } from "@daarion/city-client";
import { useEffect, useState } from "react";
import { describeError } from "./common";

/** Ask your Second Me; the conversation is your history from the gateway. */
export function SecondMePage({ client }: { client: CityClient }) {
  const [history, setHistory] = useState<SecondMeHistoryItem[]>([]);
  const [prompt, setPrompt] = useState("");
  const [asking, setAsking] = useState(false);
  const [error, setError] = useState<string | null>(null);

  useEffect(() => {
    document.title = "Second Me · DAARION City";
    client.secondMeHistory(20).then(setHistory, (e: unknown) => setError(describeError(e)));
  }, [client]);

  async function ask(event: React.FormEvent) {
    event.preventDefault();
    const text = prompt.trim();
    if (!text || asking) return;
    setAsking(true);
    setError(null);
    try {
      const answer = await client.askSecondMe(text);
      setHistory(answer.history);
      setPrompt("");
    } catch (e) {
      setError(describeError(e));
      // The gateway keeps the question even when the agent fails: show what it has.
      client.secondMeHistory(20).then(setHistory, () => undefined);
    } finally {
      setAsking(false);
    }
  }

  return (
    <section aria-labelledby="sm-title" className="secondme">
      <h1 id="sm-title">Second Me</h1>
      <p className="hint">Your personal agent. Only you see this conversation.</p>
      <ol className="chat" aria-live="polite" data-testid="secondme-history">
        {history.length === 0 && <li className="hint">No conversation yet.</li>}
        {history.map((item, i) => (
          <li key={`${item.created_at}-${i}`} className={`bubble bubble--${item.role}`} data-role={item.role}>
            <span className="visually-hidden">{item.role === "user" ? "You" : "Second Me"}: </span>
            {item.content}
          </li>
        ))}
        {asking && <li className="bubble bubble--assistant hint">Thinking…</li>}
      </ol>
      {error && (
        <p role="alert" className="error" data-testid="secondme-error">
          {error}
        </p>
      )}
      <form className="composer" onSubmit={(e) => void ask(e)}>
        <label htmlFor="sm-prompt" className="visually-hidden">
          Ask Second Me
        </label>
        <textarea id="sm-prompt" rows={2} value={prompt} onChange={(e) => setPrompt(e.target.value)} placeholder="Ask Second Me…" />
        <button type="submit" disabled={asking || !prompt.trim()}>
          {asking ? "Asking…" : "Ask"}
        </button>
      </form>
    </section>
  );
}
