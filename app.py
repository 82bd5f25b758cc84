"""GBS Explorer: ``streamlit run app.py``. The page navigation: Home (home.py), then every script in pages/."""

import streamlit as st

from dashboard import navigation

st.navigation(navigation.pages()).run()
