/** Entry point of the Mycel Explorer: opens the live feed once and renders the app into #app. */
import { render } from "preact";
import { App } from "./app.tsx";
import { createEventHub } from "./events.ts";
import "./styles.css";

const root = document.getElementById("app");
if (root) render(<App hub={createEventHub()} />, root);
