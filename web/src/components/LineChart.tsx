/**
 * A small SVG line chart: one line per series over time, a few axis ticks, a legend with each series' latest
 * value, and a visually hidden table of the same numbers for screen readers.
 */
import { useEffect, useRef, useState } from "preact/hooks";
import { formatClock, formatClockShort } from "../format.ts";

/** One line: its points in time order; null values leave a gap. */
export type ChartSeries = {
  /** A stable key (e.g. the provider address). */
  id: string;
  /** What the legend shows. */
  label: string;
  /** The full name, in the legend's title. */
  title?: string;
  /**
   * Its colour and dash pattern; by default the series' position picks one. Give it when the same thing is drawn
   * in several charts, so that it has the same colour in each.
   */
  style?: SeriesStyle;
  points: { t: number; v: number | null }[];
};

/** How a series is drawn: its colour, and a dash pattern (SVG stroke-dasharray) or none for a solid line. */
export type SeriesStyle = { color: string; dash: string | undefined };

/** Parameters of {@link LineChart}. */
export type LineChartProps = {
  title: string;
  /** One sentence saying what the chart shows. */
  description: string;
  series: ChartSeries[];
  /** Formats a value for ticks, the legend and the table ("12 ms"). */
  formatValue: (value: number) => string;
  /** Formats a tick value when it should be shorter than formatValue. */
  formatTick?: (value: number) => string;
  height?: number;
};

/** Colours that stay apart for most colour vision (Okabe–Ito), then dashed lines. */
const palette = ["#0b6bcb", "#c75000", "#00875a", "#b83280", "#8a6d00", "#3f8fb5", "#4a4a4a"];

/** The colour and dash pattern of series number `index`. */
export function seriesStyle(index: number): SeriesStyle {
  return {
    color: palette[index % palette.length] ?? "#333",
    dash: index >= palette.length ? "5 3" : undefined,
  };
}

/** A round step for about `count` ticks up to `max`: 1, 2 or 5 times a power of ten. */
function niceStep(max: number, count: number): number {
  if (!(max > 0)) return 1;
  const raw = max / count;
  const power = 10 ** Math.floor(Math.log10(raw));
  const scaled = raw / power;
  return (scaled <= 1 ? 1 : scaled <= 2 ? 2 : scaled <= 5 ? 5 : 10) * power;
}

function useWidth(fallback: number) {
  const ref = useRef<HTMLDivElement>(null);
  const [width, setWidth] = useState(fallback);
  useEffect(() => {
    const element = ref.current;
    if (!element || typeof ResizeObserver === "undefined") return;
    const observer = new ResizeObserver((entries) => {
      const measured = entries[0]?.contentRect.width;
      if (measured) setWidth(Math.floor(measured));
    });
    observer.observe(element);
    return () => observer.disconnect();
  }, []);
  return { ref, width };
}

function latestValue(series: ChartSeries): number | null {
  for (let index = series.points.length - 1; index >= 0; index--) {
    const value = series.points[index]?.v;
    if (value !== null && value !== undefined && Number.isFinite(value)) return value;
  }
  return null;
}

let chartCount = 0;

/** A line chart of series over time. */
export function LineChart(props: LineChartProps) {
  const { series, formatValue } = props;
  const formatTick = props.formatTick ?? formatValue;
  const [id] = useState(() => `chart-${++chartCount}`);
  const { ref, width } = useWidth(480);
  const height = props.height ?? 180;
  const margin = { top: 10, right: 14, bottom: 22, left: 52 };
  const plotWidth = Math.max(10, width - margin.left - margin.right);
  const plotHeight = height - margin.top - margin.bottom;

  let minT = Number.POSITIVE_INFINITY;
  let maxT = Number.NEGATIVE_INFINITY;
  let maxV = 0;
  for (const line of series)
    for (const point of line.points) {
      minT = Math.min(minT, point.t);
      maxT = Math.max(maxT, point.t);
      if (point.v !== null && Number.isFinite(point.v)) maxV = Math.max(maxV, point.v);
    }
  const hasData = Number.isFinite(minT) && series.some((line) => latestValue(line) !== null);
  if (minT === maxT) {
    minT -= 1000;
    maxT += 1000;
  }
  const step = niceStep(maxV, 4);
  const topV = Math.max(step, Math.ceil(maxV / step) * step);
  const x = (t: number) => margin.left + ((t - minT) / (maxT - minT)) * plotWidth;
  const y = (v: number) => margin.top + plotHeight - (v / topV) * plotHeight;
  const yTicks: number[] = [];
  for (let value = 0; value <= topV + step / 2; value += step) yTicks.push(value);
  // As many time ticks as fit (about one per 110 px), with seconds only over short spans.
  const xTickCount = Math.max(2, Math.min(5, Math.floor(plotWidth / 110) + 1));
  const xTicks = hasData
    ? Array.from({ length: xTickCount }, (_, index) => minT + (index / (xTickCount - 1)) * (maxT - minT))
    : [];
  const formatTime = maxT - minT > 180_000 ? formatClockShort : formatClock;

  const summary = series
    .map((line) => {
      const value = latestValue(line);
      return `${line.title ?? line.label} ${value === null ? "no data" : formatValue(value)}`;
    })
    .join("; ");

  return (
    <figure class="chart" aria-labelledby={`${id}-title`}>
      <figcaption id={`${id}-title`} class="chart-title">
        {props.title}
      </figcaption>
      <div ref={ref} class="chart-plot">
        <svg
          width={width}
          height={height}
          viewBox={`0 0 ${width} ${height}`}
          role="img"
          aria-labelledby={`${id}-svg-title ${id}-svg-desc`}
        >
          <title id={`${id}-svg-title`}>{props.title}</title>
          <desc id={`${id}-svg-desc`}>
            {props.description} Latest values: {summary || "none"}.
          </desc>
          {yTicks.map((value) => (
            <g key={`y${value}`}>
              <line
                class="chart-grid"
                x1={margin.left}
                x2={margin.left + plotWidth}
                y1={y(value)}
                y2={y(value)}
              />
              <text class="chart-tick" x={margin.left - 6} y={y(value)} dy="0.32em" text-anchor="end">
                {formatTick(value)}
              </text>
            </g>
          ))}
          {xTicks.map((t, index) => (
            <text
              key={`x${t}`}
              class="chart-tick"
              x={x(t)}
              y={height - 6}
              text-anchor={index === 0 ? "start" : index === xTicks.length - 1 ? "end" : "middle"}
            >
              {formatTime(t)}
            </text>
          ))}
          <line
            class="chart-axis"
            x1={margin.left}
            x2={margin.left + plotWidth}
            y1={margin.top + plotHeight}
            y2={margin.top + plotHeight}
          />
          {series.map((line, index) => {
            const style = line.style ?? seriesStyle(index);
            let path = "";
            let pen = false;
            let last: { t: number; v: number } | undefined;
            for (const point of line.points) {
              if (point.v === null || !Number.isFinite(point.v)) {
                pen = false;
                continue;
              }
              path += `${pen ? "L" : "M"}${x(point.t).toFixed(1)} ${y(point.v).toFixed(1)}`;
              pen = true;
              last = { t: point.t, v: point.v };
            }
            return (
              <g key={line.id}>
                <path
                  d={path}
                  fill="none"
                  stroke={style.color}
                  stroke-width="2"
                  stroke-dasharray={style.dash}
                />
                {last && <circle cx={x(last.t)} cy={y(last.v)} r="3" fill={style.color} />}
              </g>
            );
          })}
          {!hasData && (
            <text
              class="chart-empty"
              x={margin.left + plotWidth / 2}
              y={margin.top + plotHeight / 2}
              text-anchor="middle"
            >
              No data yet
            </text>
          )}
        </svg>
      </div>
      {series.length > 0 && (
        <ul class="legend" aria-hidden="true">
          {series.map((line, index) => {
            const style = line.style ?? seriesStyle(index);
            const value = latestValue(line);
            return (
              <li key={line.id} title={line.title}>
                <svg width="18" height="8" aria-hidden="true">
                  <line
                    x1="0"
                    x2="18"
                    y1="4"
                    y2="4"
                    stroke={style.color}
                    stroke-width="3"
                    stroke-dasharray={style.dash}
                  />
                </svg>
                <span class="legend-label">{line.label}</span>{" "}
                <span class="num">{value === null ? "—" : formatValue(value)}</span>
              </li>
            );
          })}
        </ul>
      )}
      <div class="sr-only">
        <table>
          <caption>{props.title}: latest, lowest and highest values</caption>
          <thead>
            <tr>
              <th scope="col">Series</th>
              <th scope="col">Latest</th>
              <th scope="col">Lowest</th>
              <th scope="col">Highest</th>
            </tr>
          </thead>
          <tbody>
            {series.map((line) => {
              const values = line.points.flatMap((point) =>
                point.v !== null && Number.isFinite(point.v) ? [point.v] : [],
              );
              const value = latestValue(line);
              return (
                <tr key={line.id}>
                  <th scope="row">{line.title ?? line.label}</th>
                  <td>{value === null ? "no data" : formatValue(value)}</td>
                  <td>{values.length ? formatValue(Math.min(...values)) : "no data"}</td>
                  <td>{values.length ? formatValue(Math.max(...values)) : "no data"}</td>
                </tr>
              );
            })}
          </tbody>
        </table>
      </div>
    </figure>
  );
}
