// Sunrise and sunset at a place on a day (NOAA's approximation, within a minute or two away
// from the poles), for automations that follow daylight.

const RAD = Math.PI / 180;

/**
 * The moments of sunrise and sunset on the UTC day that holds `day`, at latitude and longitude
 * in degrees; null where the sun does not rise or does not set that day.
 */
export function sunTimes(day: Date, latitude: number, longitude: number): { sunrise: Date; sunset: Date } | null {
  const start = Date.UTC(day.getUTCFullYear(), day.getUTCMonth(), day.getUTCDate());
  const dayOfYear = Math.floor((start - Date.UTC(day.getUTCFullYear(), 0, 1)) / 86_400_000) + 1;
  const gamma = ((2 * Math.PI) / 365) * (dayOfYear - 1);
  const equationOfTime =
    229.18 *
    (0.000075 +
      0.001868 * Math.cos(gamma) -
      0.032077 * Math.sin(gamma) -
      0.014615 * Math.cos(2 * gamma) -
      0.040849 * Math.sin(2 * gamma));
  const declination =
    0.006918 -
    0.399912 * Math.cos(gamma) +
    0.070257 * Math.sin(gamma) -
    0.006758 * Math.cos(2 * gamma) +
    0.000907 * Math.sin(2 * gamma) -
    0.002697 * Math.cos(3 * gamma) +
    0.00148 * Math.sin(3 * gamma);
  const cosHourAngle =
    Math.cos(90.833 * RAD) / (Math.cos(latitude * RAD) * Math.cos(declination)) -
    Math.tan(latitude * RAD) * Math.tan(declination);
  if (cosHourAngle < -1 || cosHourAngle > 1) return null;
  const hourAngle = Math.acos(cosHourAngle) / RAD;
  const minutes = (sign: 1 | -1) => 720 - 4 * (longitude + sign * hourAngle) - equationOfTime;
  return { sunrise: new Date(start + minutes(1) * 60_000), sunset: new Date(start + minutes(-1) * 60_000) };
}
