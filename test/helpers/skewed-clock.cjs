// Preloaded into a test server (node --require) to run its clock SKEW_MS ahead of the real one,
// so the box meets a real clock-skew refusal.
const skew = Number(process.env.SKEW_MS || 0);
const RealDate = Date;
class SkewedDate extends RealDate {
  constructor(...args) {
    if (args.length === 0) super(RealDate.now() + skew);
    else super(...args);
  }
  static now() {
    return RealDate.now() + skew;
  }
}
globalThis.Date = SkewedDate;
