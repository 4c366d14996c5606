// The web UI's pure parts, run in Node: how a live view away from home judges its link.
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { LinkJudge, type Judgement } from '../web-ui/src/link-judge.ts';

/** Checks every 2 s: `fps` frames a second and `loss` of the packets (200 a second) lost in each window. */
function judged(windows: Array<{ fps: number; loss?: number; lostBack?: number }>): Judgement[] {
  const judge = new LinkJudge();
  let counts = { lost: 0, received: 0, frames: 0, at: 0 };
  judge.judge(counts);
  return windows.map(({ fps, loss = 0, lostBack = 0 }) => {
    const sent = 400;
    const lost = Math.round(sent * loss);
    counts = {
      lost: counts.lost + lost - lostBack,
      received: counts.received + sent - lost + lostBack,
      frames: counts.frames + fps * 2,
      at: counts.at + 2000,
    };
    return judge.judge(counts)!;
  });
}
const slow = (js: Judgement[]) => js.map((j) => j.slow);

test('a steady link is good; a frame rate that drops to a third is slow at once, and stays slow while it lasts', () => {
  assert.equal(slow(judged(Array(6).fill({ fps: 15 }))), Array(6).fill(false));
  const drop = judged([...Array(5).fill({ fps: 15 }), { fps: 5 }, { fps: 5 }, { fps: 5 }]);
  assert.equal(slow(drop), [false, false, false, false, false, true, true, true]);
  assert.is(drop[5]!.usualFps, 15);
});

test('a burst of frames decoded after a stall is not taken as the usual rate: the checks after it are good', () => {
  // 15 fps, a stall, the frames held back decoded at once (40 a second), 15 fps again.
  const judgements = judged([{ fps: 15 }, { fps: 15 }, { fps: 2 }, { fps: 40 }, ...Array(6).fill({ fps: 15 })]);
  assert.equal(slow(judgements), [false, false, true, false, false, false, false, false, false, false]);
});

test('more than 5% of the packets lost is slow; a lost count that goes down (retransmissions found) is no loss', () => {
  assert.equal(slow(judged([{ fps: 15 }, { fps: 15, loss: 0.1 }, { fps: 15, loss: 0.03 }])), [false, true, false]);
  const found = judged([
    { fps: 15, loss: 0.02 },
    { fps: 15, lostBack: 8 },
  ]);
  assert.equal(slow(found), [false, false]);
  assert.is(found[1]!.loss, 0);
});

test('a camera that sends a frame or two a second is not judged by its frame rate', () => {
  assert.equal(slow(judged([{ fps: 2 }, { fps: 2 }, { fps: 0.5 }, { fps: 0.5 }])), [false, false, false, false]);
});

test.run();
