// An inline SVG sparkline: no chart library for one line.
import { fmtRate } from "./format.ts";

export function Sparkline(props: { values: number[]; label: string; windowMinutes: number; width?: number; height?: number }) {
  const { values, label, windowMinutes, width = 260, height = 44 } = props;
  const peak = Math.max(0, ...values);
  const scale = peak > 0 ? (height - 4) / peak : 0;
  const step = values.length > 1 ? width / (values.length - 1) : width;
  const points = values.map((v, i) => `${(i * step).toFixed(1)},${(height - 2 - v * scale).toFixed(1)}`);
  const line = points.join(" ");
  const area = `0,${height} ${line} ${width},${height}`;
  const last = values.at(-1) ?? 0;
  const description = `${label}: ${fmtRate(last)} attempts/s in the last complete interval, peak ${fmtRate(peak)}/s`;
  return (
    <figure class="sparkline">
      <svg
        viewBox={`0 0 ${width} ${height}`}
        width="100%"
        height={height}
        role="img"
        aria-label={description}
        preserveAspectRatio="none"
      >
        <title>{description}</title>
        <polygon points={area} class="sparkline-area" />
        <polyline points={line} class="sparkline-line" fill="none" />
      </svg>
      <figcaption>
        <span>{fmtRate(last)}/s now</span>
        <span>
          peak {fmtRate(peak)}/s · last {windowMinutes} min
        </span>
      </figcaption>
    </figure>
  );
}
